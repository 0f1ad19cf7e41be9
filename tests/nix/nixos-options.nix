# The NixOS options that nix/nixos-module.nix sets, with the types NixOS
# gives them (nixos/modules/config/system-path.nix,
# nixos/modules/system/boot/systemd.nix and nixos/lib/systemd-unit-options.nix).
# NixOS unit submodules are not free-form, so an option name that NixOS
# does not know (`wantedby`, `socketsConfig`) fails here as it fails there.
# Only the unit options a user-socket override plausibly uses are declared;
# add more here when the module starts using them.
{ lib, ... }:

let
  inherit (lib) mkOption types;

  # A value of a `[Section]` key, as NixOS' unitOption accepts it.
  unitValue = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    (types.listOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
      ]
    ))
  ];

  unitNames = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  commonUnitOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = mkOption {
      type = types.singleLineStr;
      default = "";
    };
    wantedBy = unitNames;
    requiredBy = unitNames;
    upheldBy = unitNames;
    aliases = unitNames;
    requires = unitNames;
    wants = unitNames;
    after = unitNames;
    before = unitNames;
    partOf = unitNames;
    unitConfig = mkOption {
      type = types.attrsOf unitValue;
      default = { };
    };
  };

  unitType =
    extra:
    types.attrsOf (
      types.submodule {
        options = commonUnitOptions // extra;
      }
    );

  socketType = unitType {
    listenStreams = unitNames;
    listenDatagrams = unitNames;
    socketConfig = mkOption {
      type = types.attrsOf unitValue;
      default = { };
    };
  };

  serviceType = unitType {
    serviceConfig = mkOption {
      type = types.attrsOf unitValue;
      default = { };
    };
    environment = mkOption {
      type = types.attrsOf (types.nullOr (types.either types.str types.package));
      default = { };
    };
    path = mkOption {
      type = types.listOf (types.either types.package types.str);
      default = [ ];
    };
  };
in
{
  imports = [ ./assertions.nix ];

  options = {
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    systemd.packages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    systemd.user.sockets = mkOption {
      type = socketType;
      default = { };
    };
    systemd.user.services = mkOption {
      type = serviceType;
      default = { };
    };
  };
}
