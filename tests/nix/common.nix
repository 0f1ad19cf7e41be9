# What every harness here shares: nixpkgs' real `lib` (from the path the
# Rust test passes, ../shared/nixpkgs-lib/lib beside the repository), the
# repository root, the stubs, and the way home-manager renders a unit file.
{
  libPath,
  system ? "x86_64-linux",
  packageOut ? null,
}:

let
  # Debian 12's Nix (2.8) lacks builtins that today's lib uses
  # (`readFileType`, Nix 2.14). The lib is imported with a scope that adds
  # them, written from the builtins 2.8 has; a newer Nix uses its own.
  polyfills = {
    readFileType =
      builtins.readFileType or (path: (builtins.readDir (dirOf path)).${baseNameOf (toString path)});
  };
  libScope = {
    builtins = builtins // polyfills;
    import = path: scopedImport libScope path;
  };
  nixpkgsLib = scopedImport libScope (/. + libPath);

  # home-manager evaluates its modules with `lib.hm` added; the one function
  # of it that our module calls behaves as home-manager's
  # modules/lib/assertions.nix does.
  lib = nixpkgsLib.extend (
    _final: prev: {
      hm.assertions.assertPlatform = module: pkgs: platforms: {
        assertion = builtins.elem pkgs.stdenv.hostPlatform.system platforms;
        message = "The module ${module} does not support your platform. It only supports\n\n${
          prev.concatMapStringsSep "\n" (p: "  - ${p}") (prev.sort prev.lessThan platforms)
        }";
      };
    }
  );

  stubs = import ./stubs.nix { inherit lib system packageOut; };

  # The flake's `self`, as far as the modules use it.
  self.packages.${system}.default = stubs.pkgs.stdioproxy;

  # A unit as home-manager writes it to ~/.config/systemd/user: one INI
  # section per attribute, lists as repeated keys, booleans as true/false,
  # and null or empty values (and then empty sections) left out.
  renderUnit =
    unit:
    let
      present = lib.mapAttrs (_: lib.filterAttrs (_: v: v != null && v != [ ])) unit;
    in
    lib.generators.toINI {
      listsAsDuplicateKeys = true;
      mkKeyValue =
        key: value: "${key}=${if builtins.isBool value then lib.boolToString value else toString value}";
    } (lib.filterAttrs (_: section: section != { }) present);

  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  # The configuration `lib.evalModules` makes of the declared `options`
  # (a module of tests/nix), our `module` (its file in nix/, given the stub
  # `self`, unless the flake's output is passed) and the user's `userModule`.
  # home-manager's modules see `lib.hm`; NixOS passes `withHm = false`.
  evaluate =
    {
      options,
      file,
      module ? null,
      userModule,
      withHm ? true,
    }:
    let
      evalLib = if withHm then lib else nixpkgsLib;
    in
    (evalLib.evalModules {
      specialArgs.lib = evalLib;
      modules = [
        options
        (if module == null then import (../.. + "/nix/${file}") self else module)
        { _module.args.pkgs = stubs.pkgs; }
        userModule
      ];
    }).config;
in
{
  inherit
    nixpkgsLib
    lib
    stubs
    self
    renderUnit
    failedAssertions
    evaluate
    ;
  repo = ../..;
}
