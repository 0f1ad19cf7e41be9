# The stdioproxy package: both binaries (the daemon/CLI `stdioproxy` and the
# client-side `stdioproxy-shim`) plus the systemd user units, with the unit's
# ExecStart pointing into this store path.
{
  lib,
  rustPlatform,
}:

let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # Only what the build and the tests read, so editing docs or Nix files does
  # not rebuild. The npm and Python packages the interop and client tests
  # install into a checkout (several hundred MB) stay out; a flake build
  # never sees them anyway, since it copies only files git tracks.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.difference (lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../tests
      ../systemd
      (lib.fileset.maybeMissing ../examples)
    ]) (lib.fileset.unions [
      (lib.fileset.maybeMissing ../tests/interop/node_modules)
      (lib.fileset.maybeMissing ../tests/interop/.venv)
      (lib.fileset.maybeMissing ../tests/clients/node_modules)
    ]);
  };

  cargoLock.lockFile = ../Cargo.lock;

  # `cargo test` runs in checkPhase. Tests that need what the sandbox lacks
  # (systemd-analyze, nix-instantiate, node, the npm and Python packages of
  # the interop and client tests) print one SKIPPED line and pass, as CI is
  # not set there; the unit files are verified by the flake's `units` check.
  preCheck = ''
    export HOME=$TMPDIR
    export XDG_RUNTIME_DIR=$TMPDIR/xdg-runtime
    mkdir -m 0700 -p "$XDG_RUNTIME_DIR"
  '';

  postInstall = ''
    # systemd user units; NixOS picks them up through systemd.packages.
    install -Dm644 -t $out/lib/systemd/user systemd/stdioproxy.service systemd/stdioproxy.socket
    substituteInPlace $out/lib/systemd/user/stdioproxy.service \
      --replace-fail /usr/bin/stdioproxy $out/bin/stdioproxy

    # The service variant for systemd < 253 (Type=notify + ExecReload=), for
    # people who copy units by hand onto older distributions.
    install -Dm644 systemd/legacy/stdioproxy.service \
      $out/share/stdioproxy/systemd/legacy/stdioproxy.service
    substituteInPlace $out/share/stdioproxy/systemd/legacy/stdioproxy.service \
      --replace-fail /usr/bin/stdioproxy $out/bin/stdioproxy

    # A scripted MCP server that only the integration tests use.
    rm -f $out/bin/stdioproxy-fixture-server
  '';

  meta = {
    inherit (cargoToml.package) description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "stdioproxy";
    platforms = lib.platforms.linux;
  };
}
