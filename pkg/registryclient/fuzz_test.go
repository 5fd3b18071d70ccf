package registryclient

import (
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// FuzzParseReference: no panics; what is accepted is a reference registries accept too (the
// distribution grammar: no empty or malformed path components) and prints back to itself;
// what is refused is refused with a message that names it; a host listed as insecure is
// reached over plain HTTP.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"registry.example.com/team/image:tag",
		"127.0.0.1:5000/base/busybox:1",
		"localhost:5000/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"ubuntu", "library/ubuntu:22.04", "gcr.io/p/i", "[::1]:5000/x:y",
		"UPPER/x:y", "a//b:1", "a/b/:1", "-a/b", "a/b-", "a..b/c", "a__b/c", "a___b/c", "x:tag:tag",
		"x@sha256:abc", "x:" + strings.Repeat("t", 129), "é/x", "reg:99999/x", "", ":", "@",
	} {
		f.Add(s, "")
	}
	f.Add("insecure.example:5000/x:1", "insecure.example:5000")
	f.Add("insecure.example/x:1", "insecure.example")
	f.Fuzz(func(t *testing.T, s, insecure string) {
		c := Config{}
		if insecure != "" {
			c.Insecure = []string{insecure}
		}
		ref, err := c.ParseReference(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid image reference") {
				t.Fatalf("ParseReference(%q): message %q does not say what is wrong", s, err)
			}
			return
		}
		if _, err := reference.WithName(ref.Context().Name()); err != nil {
			t.Fatalf("ParseReference(%q) accepted %s, which registries refuse: %v", s, ref.Context().Name(), err)
		}
		again, err := c.ParseReference(ref.String())
		if err != nil || again.String() != ref.String() || again.Context().Scheme() != ref.Context().Scheme() {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, ref, again, err)
		}
		if ref.Context().RegistryStr() == "" || ref.Identifier() == "" {
			t.Fatalf("ParseReference(%q) = %q: no registry or no tag/digest", s, ref)
		}
		if c.isInsecure(ref.Context().RegistryStr()) && ref.Context().Scheme() != "http" {
			t.Fatalf("%q is listed insecure, yet %q would use %s", insecure, ref, ref.Context().Scheme())
		}
	})
}
