# The home-manager options that nix/hm-module.nix sets, declared with the
# types home-manager gives them (home-manager's modules/systemd.nix,
# modules/lib/file-type.nix, modules/misc/xdg.nix, modules/home-environment.nix
# and nixpkgs' nixos/modules/misc/assertions.nix, as of late 2026). Our
# module is evaluated against these with nixpkgs' real module system, so a
# value home-manager would reject (a wrong type, an unknown option outside a
# freeform section, a misspelt `X-Reload-Triggers`) fails here too.
#
# Only the options our module touches are declared: everything else
# home-manager has is absent, so setting it would fail here although
# home-manager would accept it. Add it here when the module starts using it.
{ lib, pkgs, ... }:

let
  inherit (lib) mkOption types;

  # systemd unit sections: free-form `Section.Key = value`, where a value is
  # a bool, int, string or path, or a list of them.
  unitPrimitive = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
  ];
  unitFreeform =
    types.attrsOf (types.attrsOf (types.either unitPrimitive (types.listOf unitPrimitive)))
    // {
      description = "systemd unit configuration";
    };

  # Options home-manager declares for every unit kind.
  unitBaseOptions = {
    options.Unit = {
      Description = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      Documentation = mkOption {
        type = types.coercedTo types.str lib.toList (types.listOf types.str);
        default = [ ];
      };
    };
  };

  unitType =
    extra:
    types.attrsOf (
      types.submodule {
        freeformType = unitFreeform;
        imports = [
          unitBaseOptions
          extra
        ];
      }
    );

  # Options home-manager declares for services only.
  serviceOptions = {
    options.Unit = {
      X-Reload-Triggers = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      X-Restart-Triggers = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      X-SwitchMethod = mkOption {
        type = types.enum [
          null
          "reload"
          "restart"
          "stop-start"
          "keep-old"
        ];
        default = null;
      };
    };
    options.Service = {
      Environment = mkOption {
        type = types.coercedTo types.str lib.toList (types.listOf types.str);
        default = [ ];
      };
      ExecStart = mkOption {
        type = types.either (types.either types.package types.str) (
          types.listOf (types.either types.package types.str)
        );
        apply = lib.toList;
        default = [ ];
      };
    };
  };

  # home.file / xdg.configFile entries.
  fileType = types.attrsOf (
    types.submodule (
      { name, config, ... }:
      {
        options = {
          enable = mkOption {
            type = types.bool;
            default = true;
          };
          target = mkOption { type = types.str; };
          text = mkOption {
            type = types.nullOr types.lines;
            default = null;
          };
          source = mkOption { type = types.path; };
          executable = mkOption {
            type = types.nullOr types.bool;
            default = null;
          };
          recursive = mkOption {
            type = types.bool;
            default = false;
          };
          onChange = mkOption {
            type = types.lines;
            default = "";
          };
          force = mkOption {
            type = types.bool;
            default = false;
          };
        };
        config = {
          target = lib.mkDefault name;
          source = lib.mkIf (config.text != null) (
            lib.mkDefault (
              pkgs.writeTextFile {
                inherit name;
                inherit (config) text;
              }
            )
          );
        };
      }
    )
  );
in
{
  imports = [ ./assertions.nix ];

  options = {
    home.packages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    xdg.configFile = mkOption {
      type = fileType;
      default = { };
    };
    systemd.user.services = mkOption {
      type = unitType serviceOptions;
      default = { };
    };
    systemd.user.sockets = mkOption {
      type = unitType { };
      default = { };
    };
  };
}
