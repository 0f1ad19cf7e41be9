# `assertions` and `warnings`, as nixpkgs' nixos/modules/misc/assertions.nix
# declares them; home-manager imports the same module.
{ lib, ... }:

{
  options = {
    assertions = lib.mkOption {
      type = lib.types.listOf lib.types.unspecified;
      default = [ ];
    };
    warnings = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
    };
  };
}
