{
  description = "stdioproxy: one per-user daemon that shares every MCP server among all your MCP clients";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # The daemon relies on Linux (systemd, inotify, SO_PEERCRED).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        system: pkgs: {
          stdioproxy = pkgs.callPackage ./nix/package.nix { };
          default = self.packages.${system}.stdioproxy;
        }
      );

      # `nix run` starts the daemon in the foreground; an app's program takes
      # no arguments of its own, hence the wrapper that adds `serve`.
      # `nix run .#shim` runs the client side.
      apps = forAllSystems (
        system: pkgs:
        let
          pkg = self.packages.${system}.default;
        in
        {
          default = {
            type = "app";
            program = "${pkgs.writeShellScript "stdioproxy-serve" ''
              exec ${pkg}/bin/stdioproxy serve "$@"
            ''}";
            meta.description = "Run the stdioproxy daemon in the foreground";
          };
          shim = {
            type = "app";
            program = "${pkg}/bin/stdioproxy-shim";
            meta.description = "Connect stdin/stdout to the stdioproxy daemon";
          };
        }
      );

      overlays.default = final: _prev: {
        stdioproxy = final.callPackage ./nix/package.nix { };
      };

      # The modules take `self` so `package` defaults to this flake's build
      # without requiring the overlay.
      homeModules.default = import ./nix/hm-module.nix self;
      # The older output name, still what many home-manager configs import.
      homeManagerModules.default = self.homeModules.default;
      nixosModules.default = import ./nix/nixos-module.nix self;

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.default ];
            packages = with pkgs; [
              clippy
              rustfmt
              rust-analyzer
              cargo-nextest
              # systemd-analyze and systemd-socket-activate for the tests.
              systemd
              python3
              nixfmt-rfc-style
            ];
          };
        }
      );

      checks = forAllSystems (
        system: pkgs:
        let
          pkg = self.packages.${system}.default;
        in
        {
          # Builds and runs `cargo test`.
          package = pkg;

          # The installed units, as systemd parses them. verify only warns
          # (exit 0) on unknown keys or bad values, so any stderr fails.
          units = pkgs.runCommand "stdioproxy-units-verify" { nativeBuildInputs = [ pkgs.systemd ]; } ''
            export HOME=$TMPDIR
            export XDG_RUNTIME_DIR=$TMPDIR/xdg-runtime
            mkdir -m 0700 -p "$XDG_RUNTIME_DIR"
            verify() {
              if ! systemd-analyze --user verify --man=no "$@" 2>err.txt || [ -s err.txt ]; then
                cat err.txt >&2
                exit 1
              fi
            }
            verify ${pkg}/lib/systemd/user/stdioproxy.socket ${pkg}/lib/systemd/user/stdioproxy.service
            mkdir legacy
            cp ${pkg}/lib/systemd/user/stdioproxy.socket ${pkg}/share/stdioproxy/systemd/legacy/stdioproxy.service legacy/
            verify legacy/stdioproxy.socket legacy/stdioproxy.service
            touch $out
          '';

          clippy = pkg.overrideAttrs (old: {
            pname = "stdioproxy-clippy";
            nativeBuildInputs = (old.nativeBuildInputs or [ ]) ++ [ pkgs.clippy ];
            buildPhase = ''
              runHook preBuild
              cargo clippy --offline --all-targets -- -D warnings
              runHook postBuild
            '';
            doCheck = false;
            installPhase = ''
              touch $out
            '';
          });
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-rfc-style);
    };
}
