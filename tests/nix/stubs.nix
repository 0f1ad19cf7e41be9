# Stand-ins for the parts of nixpkgs that `nix/` and `flake.nix` call but
# that cannot be evaluated here (nixpkgs itself is not available offline;
# only its `lib` is, in ../shared/nixpkgs-lib). Each stub keeps the shape the
# real function returns (a derivation-like attribute set with `outPath`, so
# string interpolation and `lib.types.package` behave as with nixpkgs) and
# keeps its inputs in `passthru`-style attributes for the harnesses to read.
#
# Nothing here is built: these tests prove what the expressions *evaluate*
# to, not that `nix build` succeeds (see nix/README.md).
{
  lib,
  system ? "x86_64-linux",
  # Where the stub stdioproxy package "lives": the Rust test points it at a
  # directory whose bin/stdioproxy is the test build, so rendered units can
  # be checked by systemd-analyze.
  packageOut ? null,
}:

let
  # A fake store path: 32 characters of hash in Nix's base-32 alphabet
  # (hex without its "e").
  storeHash = seed: lib.replaceStrings [ "e" ] [ "g" ] (builtins.substring 0 32 (builtins.hashString "sha256" seed));
  storePath = name: seed: "/nix/store/${storeHash seed}-${name}";

  # The output path of a fake derivation, with the string context a real
  # one has (home-manager's `either package str` keeps such a string as it
  # is, where a context-free store path string would be looked up in the
  # store).
  outputPath =
    name: seed:
    builtins.appendContext (storePath name seed) {
      ${storePath "${name}.drv" seed} = {
        outputs = [ "out" ];
      };
    };

  # A derivation-like value; `extra` is kept on it for the harnesses. Its
  # store path changes with `extra.seed` (the inputs that matter), as a real
  # one changes with its inputs.
  fakeDrv =
    name: extra:
    {
      type = "derivation";
      inherit name system;
      outPath = outputPath name (name + (extra.seed or ""));
      outputs = [ "out" ];
      meta = { };
    }
    // extra;

  # A package with a main program, as `lib.getExe` expects.
  package =
    pname:
    fakeDrv "${pname}-1.0" {
      inherit pname;
      meta.mainProgram = pname;
    };

  # The stdioproxy package as the modules receive it.
  stdioproxy =
    let
      drv = fakeDrv "stdioproxy-0.1.0" {
        pname = "stdioproxy";
        meta.mainProgram = "stdioproxy";
      };
    in
    if packageOut == null then drv else drv // { outPath = packageOut; };

  # nixpkgs' `pkgs.formats.toml`: the same option type (a TOML value: no
  # null), and a `generate` that keeps the value instead of running
  # remarshal's json2toml, so the Rust test can render and check it.
  tomlFormat =
    { }:
    {
      type =
        let
          valueType =
            lib.types.oneOf [
              lib.types.bool
              lib.types.int
              lib.types.float
              lib.types.str
              lib.types.path
              (lib.types.attrsOf valueType)
              (lib.types.listOf valueType)
            ]
            // {
              description = "TOML value";
            };
        in
        valueType;
      generate =
        name: value:
        fakeDrv name {
          tomlValue = value;
          # What nixpkgs hands json2toml.
          json = builtins.toJSON value;
          seed = builtins.toJSON value;
        };
    };

  # nixpkgs' rustPlatform.buildRustPackage, returning a derivation-like
  # value that supports `overrideAttrs` (the flake's clippy check uses it).
  buildRustPackage =
    args:
    let
      make =
        attrs:
        fakeDrv "${attrs.pname}-${attrs.version}" {
          inherit (attrs) pname version;
          buildArgs = attrs;
          # Distinct from the stand-in package the module harnesses pass.
          seed = "buildRustPackage ${attrs.pname} ${attrs.buildPhase or ""}";
          meta = attrs.meta or { };
          overrideAttrs = f: make (attrs // f attrs);
        };
    in
    make args;

  # `callPackage`: auto-fills a function's arguments from the package set.
  callPackage =
    fn: overrides:
    let
      f = if builtins.isFunction fn then fn else import fn;
    in
    f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

  pkgs = {
    inherit
      lib
      system
      callPackage
      stdioproxy
      ;
    stdenv.hostPlatform.system = system;
    stdenv.isLinux = lib.hasSuffix "-linux" system;
    formats.toml = tomlFormat;
    rustPlatform.buildRustPackage = buildRustPackage;
    writeShellScript =
      name: text:
      fakeDrv name {
        inherit text;
        seed = text;
      };
    writeTextFile =
      args:
      fakeDrv args.name {
        inherit (args) text;
        seed = args.text;
      };
    runCommand =
      name: env: script:
      fakeDrv name {
        inherit env script;
        seed = script + builtins.toJSON env;
      };
    mkShell = args: fakeDrv "nix-shell" { shellArgs = args; };
    # The tools the dev shell and checks name.
    clippy = package "clippy";
    rustfmt = package "rustfmt";
    rust-analyzer = package "rust-analyzer";
    cargo-nextest = package "cargo-nextest";
    systemd = package "systemd";
    python3 = package "python3";
    nixfmt-rfc-style = package "nixfmt";
    nodejs = package "node";
    uv = package "uv";
  };
in
{
  inherit
    pkgs
    package
    fakeDrv
    storePath
    ;
}
