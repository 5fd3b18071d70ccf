package publish

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/fairing-dev/fairing/pkg/registryclient"
)

// FuzzParseDestination: no panics; each kind of destination keeps what was given (an OCI
// layout's directory and tag, a tarball's file, a registry reference that prints back to
// itself), and naming it with a digest gives something that parses as that digest.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{
		"registry.example.com/team/image:tag", "127.0.0.1:5000/me/train", "oci:out/layout:v1", "oci:/abs/dir:latest",
		"oci:dir", "oci::v1", "oci:dir:", "oci:a:b/c", "oci:c:/x:y", "tar:img.tar", "tar:", "tar:/dev/null",
		"x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "bad ref!", "", "oci:", ":",
	} {
		f.Add(s)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDestination(s, registryclient.Config{})
		if err != nil {
			if !strings.Contains(err.Error(), "destination") {
				t.Fatalf("ParseDestination(%q): message %q does not name the destination", s, err)
			}
			return
		}
		if d.Raw != s || d.String() != s {
			t.Fatalf("ParseDestination(%q) kept %q", s, d.Raw)
		}
		named := d.WithDigest(digest)
		switch d.Kind {
		case Layout:
			if !strings.HasPrefix(s, "oci:") || d.Path == "" || d.Tag == "" || strings.Contains(d.Tag, "/") || "oci:"+d.Path+":"+d.Tag != s {
				t.Fatalf("ParseDestination(%q) = layout %q tag %q", s, d.Path, d.Tag)
			}
			if named != "oci:"+d.Path+"@"+digest {
				t.Fatalf("WithDigest = %q", named)
			}
		case Tarball:
			if "tar:"+d.Path != s || d.Path == "" {
				t.Fatalf("ParseDestination(%q) = tarball %q", s, d.Path)
			}
		case Registry:
			if strings.HasPrefix(s, "oci:") || strings.HasPrefix(s, "tar:") || d.Ref == nil {
				t.Fatalf("ParseDestination(%q) = registry %v", s, d.Ref)
			}
			if _, ok := d.Ref.(name.Tag); !ok {
				t.Fatalf("ParseDestination(%q) accepted %q, which is not a tag: the digest is only known after the build", s, d.Ref)
			}
			r, err := name.NewDigest(named)
			if err != nil || r.DigestStr() != digest || r.Context().String() != d.Ref.Context().String() {
				t.Fatalf("WithDigest(%q) = %q: %v", s, named, err)
			}
		default:
			t.Fatalf("ParseDestination(%q): kind %d", s, d.Kind)
		}
	})
}
