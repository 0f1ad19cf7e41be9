# Evaluates nix/hm-module.nix as home-manager would (see hm-options.nix)
# with `userModule` as the user's configuration, and returns what
# home-manager would act on: packages, managed files (with the value the
# TOML generator received), and the units as written to disk.
#
#   nix-instantiate --eval --strict --json tests/nix/hm.nix \
#     --argstr libPath "$PWD/../shared/nixpkgs-lib/lib" \
#     --arg userModule '{ services.stdioproxy.enable = true; }'
{
  libPath,
  system ? "x86_64-linux",
  packageOut ? null,
  userModule ? { },
  # Which module to evaluate: the file, or the flake's output (flake.nix).
  module ? null,
}:

let
  common = import ./common.nix { inherit libPath system packageOut; };
  inherit (common) lib;

  config = common.evaluate {
    options = ./hm-options.nix;
    file = "hm-module.nix";
    inherit module userModule;
  };
in
{
  failedAssertions = common.failedAssertions config;
  inherit (config) warnings;
  packages = map toString config.home.packages;
  configFiles = lib.mapAttrs (_: file: {
    inherit (file) target;
    source = toString file.source;
    # The JSON nixpkgs' formats.toml passes to json2toml, when the source is
    # one of its outputs, directly or through the build-time check.
    tomlJson = file.source.json or file.source.env.rendered.json or null;
    # The build-time check: its script and the file it checks.
    checkScript = file.source.script or null;
    checkInputs = map toString (file.source.env.nativeBuildInputs or [ ]);
  }) (lib.filterAttrs (_: file: file.enable) config.xdg.configFile);
  services = lib.mapAttrs (_: common.renderUnit) config.systemd.user.services;
  sockets = lib.mapAttrs (_: common.renderUnit) config.systemd.user.sockets;
  service = config.systemd.user.services.stdioproxy or null;
  socket = config.systemd.user.sockets.stdioproxy or null;
  package = toString config.services.stdioproxy.package;
}
