package build

import (
	"strings"
	"testing"
)

// FuzzParsePlatforms: no panics; every platform accepted has an OS and an architecture and
// prints back to itself; a refusal names the bad value and shows the expected form.
func FuzzParsePlatforms(f *testing.F) {
	for _, s := range []string{
		"linux/amd64", "linux/arm64/v8", "linux/amd64,linux/arm64", "all", "", " linux/amd64 , linux/arm/v7 ",
		"windows/amd64:10.0.17763", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "foo", ",,", "linux//v8",
		"linux/amd64:", ":", "linux/amd64/v8:1.0", "LINUX/AMD64", "linux/amd64\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePlatforms([]string{s})
		if err != nil {
			if !strings.Contains(err.Error(), "invalid platform") || !strings.Contains(err.Error(), "OS/ARCH") {
				t.Fatalf("ParsePlatforms(%q): message %q does not say what is wrong", s, err)
			}
			return
		}
		for _, p := range ps {
			if p.OS == "" || p.Architecture == "" {
				t.Fatalf("ParsePlatforms(%q) accepted %#v: no OS or architecture", s, p)
			}
			again, err := ParsePlatforms([]string{p.String()})
			if err != nil || len(again) != 1 || !again[0].Equals(p) {
				t.Fatalf("round trip %q -> %#v -> %q -> %#v, %v", s, p, p.String(), again, err)
			}
		}
	})
}
