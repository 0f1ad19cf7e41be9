# Evaluates nix/nixos-module.nix as NixOS would (see nixos-options.nix),
# with `userModule` as the system configuration, and returns the packages
# and unit settings NixOS would act on.
{
  libPath,
  system ? "x86_64-linux",
  userModule ? { },
  # Which module to evaluate: the file, or the flake's output (flake.nix).
  module ? null,
}:

let
  common = import ./common.nix { inherit libPath system; };
  inherit (common) lib stubs;

  eval = lib.evalModules {
    modules = [
      ./nixos-options.nix
      (if module == null then import (common.repo + "/nix/nixos-module.nix") common.self else module)
      { _module.args.pkgs = stubs.pkgs; }
      userModule
    ];
  };
  inherit (eval) config;
in
{
  failedAssertions = common.failedAssertions config;
  inherit (config) warnings;
  systemPackages = map toString config.environment.systemPackages;
  systemdPackages = map toString config.systemd.packages;
  userSockets = config.systemd.user.sockets;
  userServices = config.systemd.user.services;
  package = toString config.services.stdioproxy.package;
}
