# Calls flake.nix's `outputs` as `nix flake` would, with a stub `nixpkgs`
# input (nixpkgs' real `lib`, and `legacyPackages.<system>` from stubs.nix),
# and returns the attribute tree plus what each output holds. The flake's
# modules are evaluated through the same harnesses as the module files, with
# the package they default to coming from the flake itself.
{
  libPath,
  # The system whose outputs are looked at in detail.
  system ? "x86_64-linux",
}:

let
  common = import ./common.nix { inherit libPath system; };
  inherit (common) nixpkgsLib;

  flake = import (common.repo + "/flake.nix");

  nixpkgsFor =
    legacyPackages:
    {
      lib = nixpkgsLib;
      inherit legacyPackages;
      outPath = "/nix/store/00000000000000000000000000000000-source";
    };
  stubPackages = nixpkgsLib.genAttrs [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" ] (
    s: (import ./stubs.nix { lib = common.lib; system = s; }).pkgs
  );

  # `self` is the flake's outputs plus its source, as Nix passes it.
  outputsWith =
    nixpkgs:
    let
      self =
        flake.outputs {
          inherit self nixpkgs;
        }
        // {
          outPath = toString common.repo;
          inherit (flake) description;
        };
    in
    self;

  outputs = outputsWith (nixpkgsFor stubPackages);

  # The same outputs, but where `writeShellScript` returns the script text
  # as its "path", so the app's program can be read.
  transparent = outputsWith (
    nixpkgsFor (
      nixpkgsLib.mapAttrs (_: pkgs: pkgs // { writeShellScript = _name: text: text; }) stubPackages
    )
  );

  names = builtins.attrNames;
  perSystem = attrs: nixpkgsLib.mapAttrs (_: names) attrs;
  describeApp = app: {
    inherit (app) type program;
    description = app.meta.description or null;
  };

  pkg = outputs.packages.${system}.default;
  hm = import ./hm.nix {
    inherit libPath system;
    module = outputs.homeModules.default;
    userModule.services.stdioproxy = {
      enable = true;
      settings.servers.demo.command = "demo";
    };
  };
  hmLegacyName = import ./hm.nix {
    inherit libPath system;
    module = outputs.homeManagerModules.default;
    userModule.services.stdioproxy.enable = true;
  };
  nixos = import ./nixos.nix {
    inherit libPath system;
    module = outputs.nixosModules.default;
    userModule.services.stdioproxy.enable = true;
  };
in
{
  inherit (flake) description;
  inputs = nixpkgsLib.mapAttrs (_: input: input.url or null) flake.inputs;
  outputNames = names (builtins.removeAttrs outputs [
    "outPath"
    "description"
  ]);
  packages = perSystem outputs.packages;
  apps = perSystem outputs.apps;
  checks = perSystem outputs.checks;
  devShells = perSystem outputs.devShells;
  formatter = nixpkgsLib.mapAttrs (_: f: f.name) outputs.formatter;

  packagePath = toString pkg;
  packageName = {
    inherit (pkg) pname version;
  };
  packageSameAsStdioproxy = toString outputs.packages.${system}.stdioproxy == toString pkg;
  appDefault = describeApp outputs.apps.${system}.default;
  appShim = describeApp outputs.apps.${system}.shim;
  appDefaultScript = transparent.apps.${system}.default.program;

  homeModuleIsFunction = builtins.isFunction outputs.homeModules.default;
  # The older output name evaluates to the same module.
  homeManagerModulesExecStart = hmLegacyName.service.Service.ExecStart;
  nixosModuleIsFunction = builtins.isFunction outputs.nixosModules.default;
  homeModulePackage = hm.package;
  homeModuleExecStart = hm.service.Service.ExecStart;
  nixosModulePackages = nixos.systemdPackages;

  overlayPackage =
    let
      final = stubPackages.${system} // overlaid;
      overlaid = outputs.overlays.default final stubPackages.${system};
    in
    {
      inherit (overlaid.stdioproxy) pname version;
    };

  checkDetails = {
    package = toString outputs.checks.${system}.package;
    unitsScript = outputs.checks.${system}.units.script;
    clippyName = outputs.checks.${system}.clippy.name;
    clippyBuildPhase = outputs.checks.${system}.clippy.buildArgs.buildPhase;
    clippyDoCheck = outputs.checks.${system}.clippy.buildArgs.doCheck;
  };
  devShellPackages = map (p: p.name) outputs.devShells.${system}.default.shellArgs.packages;
  devShellInputsFrom = map toString outputs.devShells.${system}.default.shellArgs.inputsFrom;
}
