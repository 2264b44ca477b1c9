# NixOS module: services.larder.
self:
{ config, lib, pkgs, ... }:

let
  cfg = config.services.larder;
  yaml = pkgs.formats.yaml { };
  configFile = yaml.generate "larder.yaml" cfg.settings;
  port = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));
  serverURL = "http://127.0.0.1:${toString port}";
  prefetchArgs = p:
    [ "--server" serverURL "--pin" p.pin ]
    ++ lib.concatMap (f: [ "--flake" f ]) p.flakes
    ++ lib.optional p.flakeInputs "--flake-inputs"
    ++ lib.optional p.buildDeps "--build-deps"
    ++ p.paths;
in
{
  options.services.larder = {
    enable = lib.mkEnableOption "Larder, an offline mirror and caching proxy for Nix binary caches";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.larder;
      description = "The larder package.";
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = yaml.type;
        options.listen = lib.mkOption {
          type = lib.types.str;
          default = ":5000";
          description = "Address to listen on.";
        };
      };
      default = { };
      example = {
        upstream = [ "https://cache.nixos.org" ];
        max-size = "200G";
        local-store = true;
      };
      description = ''
        Larder's settings, written to its YAML config file. Every key of
        configs/larder.yaml in the Larder repository is accepted (upstream,
        trusted-key, upstreams, max-size, prepull, local-store, push-token-file, …).
      '';
    };

    secretKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        Signing key in the format of `nix-store --generate-binary-cache-key`.
        Null: Larder creates one in its state directory on first start.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the listen port in the firewall.";
    };

    prefetch = {
      enable = lib.mkEnableOption "a timer that re-runs `larder prefetch` for the listed pins";
      onCalendar = lib.mkOption {
        type = lib.types.str;
        default = "*-*-* 03:00:00";
        description = "When to prefetch (systemd calendar event).";
      };
      pins = lib.mkOption {
        default = [ ];
        description = "Closures to keep mirrored and pinned.";
        type = lib.types.listOf (lib.types.submodule {
          options = {
            pin = lib.mkOption { type = lib.types.str; description = "Pin name."; };
            flakes = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; description = "Installables to evaluate."; };
            flakeInputs = lib.mkOption { type = lib.types.bool; default = true; description = "Also mirror the flakes' inputs."; };
            buildDeps = lib.mkOption { type = lib.types.bool; default = false; description = "Also mirror build-time dependencies."; };
            paths = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; description = "Store paths."; };
          };
        });
      };
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ port ];

    systemd.services.larder = {
      description = "Larder Nix binary cache";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs ([
          (lib.getExe cfg.package) "serve" "--config" configFile "--data-dir" "/var/lib/larder"
        ] ++ lib.optionals (cfg.secretKeyFile != null) [ "--secret-key-file" "%d/secret-key" ]);
        LoadCredential = lib.mkIf (cfg.secretKeyFile != null) [ "secret-key:${cfg.secretKeyFile}" ];
        DynamicUser = true;
        StateDirectory = "larder";
        Restart = "on-failure";
        # Hardening: Larder needs its state directory, the network, and (with
        # local-store) read access to /nix.
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        CapabilityBoundingSet = "";
      };
    };

    systemd.services.larder-prefetch = lib.mkIf cfg.prefetch.enable {
      description = "Larder prefetch of pinned closures";
      after = [ "larder.service" ];
      requires = [ "larder.service" ];
      path = [ config.nix.package ];
      serviceConfig.Type = "oneshot";
      script = lib.concatMapStringsSep "\n"
        (p: "${lib.getExe cfg.package} prefetch ${lib.escapeShellArgs (prefetchArgs p)} || status=1")
        cfg.prefetch.pins + "\nexit \${status:-0}";
    };

    systemd.timers.larder-prefetch = lib.mkIf cfg.prefetch.enable {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.prefetch.onCalendar;
        Persistent = true;
      };
    };
  };
}
