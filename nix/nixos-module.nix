# NixOS module: services.stdioproxy.
#
# NixOS cannot write each user's ~/.config, so this module only installs the
# package and its systemd user units (from $out/lib/systemd/user) and enables
# the socket for every user; each user writes their own
# ~/.config/stdioproxy/config.toml (or uses the home-manager module instead,
# which also manages the config).
self:
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.stdioproxy;
in
{
  options.services.stdioproxy = {
    enable = lib.mkEnableOption "stdioproxy's socket-activated user daemon for all users";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = lib.literalExpression "stdioproxy.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The stdioproxy package to use.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    systemd.packages = [ cfg.package ];
    # The packaged socket unit's [Install] section is not applied by
    # systemd.packages; this adds the sockets.target.wants link.
    systemd.user.sockets.stdioproxy.wantedBy = [ "sockets.target" ];
  };
}
