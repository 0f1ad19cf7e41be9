# Evaluates nix/package.nix with nixpkgs' real `lib` and a
# `rustPlatform.buildRustPackage` that returns its arguments, and reports
# what nixpkgs would build from: name and version, the files of the source
# (the real `lib.fileset` evaluates the file set; only `toSource`, which
# would copy it to the store, is replaced), the install script and meta.
{
  libPath,
  system ? "x86_64-linux",
}:

let
  common = import ./common.nix { inherit libPath system; };
  inherit (common) nixpkgsLib;

  # `toSource` keeps its arguments instead of copying the files.
  lib = nixpkgsLib // {
    fileset = nixpkgsLib.fileset // {
      toSource = args: { toSourceArgs = args; };
    };
  };

  args = import (common.repo + "/nix/package.nix") {
    inherit lib;
    rustPlatform.buildRustPackage = args: args;
  };

  root = toString common.repo;
  relative = path: nixpkgsLib.removePrefix "${root}/" (toString path);
in
{
  inherit (args)
    pname
    version
    postInstall
    preCheck
    ;
  argNames = builtins.attrNames args;
  srcRoot = toString args.src.toSourceArgs.root;
  repoRoot = root;
  srcFiles = map relative (nixpkgsLib.fileset.toList args.src.toSourceArgs.fileset);
  cargoLockFile = relative args.cargoLock.lockFile;
  meta = {
    inherit (args.meta) description mainProgram platforms;
    licenses = map (l: l.spdxId) args.meta.license;
  };
}
