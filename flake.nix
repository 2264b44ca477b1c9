{
  description = "Larder: an offline mirror and bandwidth-saving caching proxy for Nix binary caches";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        larder = pkgs.callPackage ./nix/package.nix { };
        default = larder;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.larder}/bin/larder";
        };
      });

      nixosModules.larder = import ./nix/module.nix self;
      nixosModules.default = self.nixosModules.larder;
    };
}
