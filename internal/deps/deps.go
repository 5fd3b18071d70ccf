package deps

import (
	_ "github.com/containerd/stargz-snapshotter/estargz"
	_ "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "github.com/google/go-containerregistry/pkg/v1/validate"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/klauspost/pgzip"
	_ "github.com/moby/buildkit/client"
	_ "github.com/moby/buildkit/session/auth/authprovider"
	_ "github.com/moby/buildkit/util/progress/progressui"
	_ "github.com/moby/patternmatcher"
	_ "github.com/moby/patternmatcher/ignorefile"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/sync/errgroup"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "sigs.k8s.io/yaml"
)
