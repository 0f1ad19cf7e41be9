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

  config = common.evaluate {
    options = ./nixos-options.nix;
    file = "nixos-module.nix";
    inherit module userModule;
    withHm = false;
  };
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
