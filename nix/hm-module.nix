# home-manager module: services.stdioproxy.
#
#   imports = [ stdioproxy.homeModules.default ];
#   services.stdioproxy = {
#     enable = true;
#     settings.servers.github = {
#       command = "npx";
#       args = [ "-y" "@modelcontextprotocol/server-github" ];
#       env.GITHUB_TOKEN = "\${GITHUB_TOKEN}";
#     };
#   };
#
# Then point each MCP client at `stdioproxy-shim` (`stdioproxy setup <client>`).
self:
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.stdioproxy;
  tomlFormat = pkgs.formats.toml { };
  hasSettings = cfg.settings != { };
  rendered = tomlFormat.generate "stdioproxy-config.toml" cfg.settings;
  # The rendered file, read by the daemon's own parser at build time: a
  # setting the daemon would refuse (an unknown key, a bad duration) fails
  # `home-manager switch` instead of the next reload.
  checkedConfig =
    pkgs.runCommand "stdioproxy-config.toml"
      {
        inherit rendered;
        nativeBuildInputs = [ cfg.package ];
        preferLocalBuild = true;
      }
      ''
        install -m 0600 "$rendered" config.toml
        stdioproxy check --config config.toml
        install -m 0444 config.toml "$out"
      '';
  configFile = if cfg.checkConfig then checkedConfig else rendered;
in
{
  options.services.stdioproxy = {
    enable = lib.mkEnableOption "stdioproxy, the per-user daemon that shares MCP servers among all MCP clients";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = lib.literalExpression "stdioproxy.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The stdioproxy package to use.";
    };

    settings = lib.mkOption {
      type = tomlFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          servers.github = {
            command = "npx";
            args = [ "-y" "@modelcontextprotocol/server-github" ];
            env.GITHUB_TOKEN = "''${GITHUB_TOKEN}";
          };
          servers.sqlite = {
            command = "uvx";
            args = [ "mcp-server-sqlite" "--db-path" "~/data.db" ];
            enabled = false;
          };
        }
      '';
      description = ''
        Configuration written to {file}`$XDG_CONFIG_HOME/stdioproxy/config.toml`.
        When empty (the default) the file is not managed, so it can be edited
        by hand or with `stdioproxy import`. Values of `env` may reference
        the daemon's environment as `''${VAR}`; keep secrets out of the Nix
        store that way.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Check the generated config with `stdioproxy check` when it is
        built, so settings the daemon would refuse fail the build. Turn it
        off when the package cannot run on the build machine (cross builds).
      '';
    };

    socketActivation = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Start the daemon when the first client connects to
        {file}`$XDG_RUNTIME_DIR/stdioproxy/stdioproxy.sock`. When false the
        daemon starts with the session (`default.target`) and binds the
        socket itself, so MCP servers are warm before any client asks.
      '';
    };

    notifyReload = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Use `Type=notify-reload`, which makes `systemctl --user reload` wait
        until the new configuration is applied. It needs systemd 253 or newer
        in the user manager; set this to false on older systems (Debian 12
        ships 252) to use `Type=notify` with `ExecReload = stdioproxy reload`.
      '';
    };

    logFilter = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "info,stdioproxy=debug";
      description = "`RUST_LOG` filter for the daemon's logs (in the journal). Null keeps the daemon's default (`info`).";
    };

    extraPackages = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.nodejs pkgs.uv ]";
      description = ''
        Packages put first on the daemon's `PATH`, for the programs the
        servers run (`npx`, `uvx`, `docker`...). A user service does not see
        the `PATH` of your login shell.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      (lib.hm.assertions.assertPlatform "services.stdioproxy" pkgs lib.platforms.linux)
    ];

    home.packages = [ cfg.package ];

    xdg.configFile."stdioproxy/config.toml" = lib.mkIf hasSettings { source = configFile; };

    systemd.user.services.stdioproxy = {
      Unit = {
        Description = "stdioproxy daemon (owns the MCP server processes shared by all MCP clients)";
        # A new config makes `home-manager switch` *reload* the daemon
        # (changed servers are swapped in, the others keep running) instead
        # of restarting it, which would kill every MCP server and session.
        X-Reload-Triggers = lib.optional hasSettings "${configFile}";
      }
      // lib.optionalAttrs cfg.socketActivation {
        Requires = [ "stdioproxy.socket" ];
        After = [ "stdioproxy.socket" ];
      };

      # See systemd/stdioproxy.service for the reasons behind each setting.
      Service = {
        Type = if cfg.notifyReload then "notify-reload" else "notify";
        ExecStart = "${lib.getExe cfg.package} serve";
        NotifyAccess = "main";
        WatchdogSec = "30s";
        Restart = "on-failure";
        RestartSec = "2s";
        TimeoutStartSec = "90s";
        TimeoutStopSec = "20s";
        KillMode = "mixed";
        UMask = "0077";
        Environment =
          lib.optional (cfg.logFilter != null) "RUST_LOG=${cfg.logFilter}"
          ++ lib.optional (cfg.extraPackages != [ ]) "PATH=${
            lib.concatStringsSep ":" [
              (lib.makeBinPath cfg.extraPackages)
              "/run/wrappers/bin"
              "%h/.nix-profile/bin"
              "/etc/profiles/per-user/%u/bin"
              "/nix/var/nix/profiles/default/bin"
              "/run/current-system/sw/bin"
              "/usr/local/bin"
              "/usr/bin"
              "/bin"
            ]
          }";
      }
      // lib.optionalAttrs (!cfg.notifyReload) {
        # Waits until the reload is applied, and fails on an invalid config.
        ExecReload = "${lib.getExe cfg.package} reload";
      };

      Install =
        if cfg.socketActivation then
          { Also = [ "stdioproxy.socket" ]; }
        else
          { WantedBy = [ "default.target" ]; };
    };

    systemd.user.sockets.stdioproxy = lib.mkIf cfg.socketActivation {
      Unit.Description = "stdioproxy listening socket (shares MCP servers among MCP clients)";
      Socket = {
        ListenStream = "%t/stdioproxy/stdioproxy.sock";
        SocketMode = "0600";
        DirectoryMode = "0700";
        Accept = false;
        FileDescriptorName = "stdioproxy";
        RemoveOnStop = true;
      };
      Install.WantedBy = [ "sockets.target" ];
    };
  };
}
