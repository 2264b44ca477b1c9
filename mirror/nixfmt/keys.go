package nixfmt

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// SecretKey is a Nix binary cache signing key ("NAME:base64(seed‖pub)").
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is a Nix binary cache public key ("NAME:base64(pub)").
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// GenerateKey makes a fresh key pair named name.
func GenerateKey(name string) (SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SecretKey{}, err
	}
	return SecretKey{name, priv}, nil
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\r\n") {
		return fmt.Errorf("key name %q: must be non-empty without colons or spaces", name)
	}
	return nil
}

func splitKey(s string, size int, what string) (string, []byte, error) {
	name, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || checkKeyName(name) != nil {
		return "", nil, fmt.Errorf("%s: want NAME:BASE64", what)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != size {
		return "", nil, fmt.Errorf("%s %q: key must be %d bytes of base64", what, name, size)
	}
	return name, raw, nil
}

// ParseSecretKey reads the format of nix-store --generate-binary-cache-key.
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := splitKey(s, ed25519.PrivateKeySize, "secret key")
	if err != nil {
		return SecretKey{}, err
	}
	return SecretKey{name, ed25519.PrivateKey(raw)}, nil
}

// ParsePublicKey reads "NAME:BASE64" as in trusted-public-keys.
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitKey(s, ed25519.PublicKeySize, "public key")
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{name, ed25519.PublicKey(raw)}, nil
}

func (k SecretKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

func (k PublicKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

// Public is the key's public half under the same name.
func (k SecretKey) Public() PublicKey {
	return PublicKey{k.Name, k.Key.Public().(ed25519.PublicKey)}
}

// Sign returns a "NAME:base64" signature of a fingerprint.
func (k SecretKey) Sign(fingerprint string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fingerprint)))
}

// SignNarInfo signs the narinfo's fingerprint.
func (k SecretKey) SignNarInfo(ni *NarInfo) string { return k.Sign(ni.Fingerprint()) }

// Verify reports whether sig is a valid signature of fingerprint by this key.
// Signatures by other key names are simply not this key's.
func (k PublicKey) Verify(fingerprint, sig string) bool {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok || name != k.Name {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	return err == nil && len(raw) == ed25519.SignatureSize && ed25519.Verify(k.Key, []byte(fingerprint), raw)
}

// VerifyNarInfo reports whether any Sig line is valid under any of keys.
func VerifyNarInfo(ni *NarInfo, keys []PublicKey) bool {
	fp := ni.Fingerprint()
	for _, s := range ni.Sigs {
		for _, k := range keys {
			if k.Verify(fp, s) {
				return true
			}
		}
	}
	return false
}
