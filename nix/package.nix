{ lib, buildGoModule, xz, pkg-config }:

buildGoModule {
  pname = "larder";
  version = "0.1.0";
  src = lib.cleanSource ./..;
  subPackages = [ "cmd/larder" ];

  # `go mod vendor` of go.mod/go.sum, hashed with `nix hash path`; update
  # it whenever go.sum changes.
  vendorHash = "sha256-BKP8GNCM77srmop/hpQJirfwvN8sNO0pZZwcWIBxYXg=";

  # xz NARs are verified with liblzma through cgo.
  nativeBuildInputs = [ pkg-config ];
  buildInputs = [ xz ];
  env.CGO_ENABLED = "1";

  # The tests drive the real Nix client as root; they run in CI, not here.
  doCheck = false;

  meta = {
    description = "Offline mirror and caching proxy for Nix binary caches";
    license = lib.licenses.mit;
    mainProgram = "larder";
    platforms = lib.platforms.linux;
  };
}
