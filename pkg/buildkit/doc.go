// Package buildkit builds images that must run steps (a pip install) through a buildkitd, with
// BuildKit's Go client.
//
// One call does a whole build: Build(ctx, Options) connects to a buildkitd (an address, the
// BUILDKIT_HOST convention, or a private child daemon started for this build and stopped after
// it), prepares the Dockerfile (the user's, or one generated from a Spec of preprocessor
// sources), sends the context as a local mount, solves with the built-in dockerfile.v0 frontend,
// exports to every destination, and returns the digest and what the CLI writes to its digest and
// metadata files.
//
// The generated Dockerfile keeps the original Fairing's semantics: FROM the base, WORKDIR /app,
// ENV FAIRING_RUNTIME=1, dependency files copied and installed before the code (so a code change
// does not reinstall dependencies), code copied last, exec-form CMD. The Dockerfile and its
// context are served to buildkitd from memory and the user's files (contextFS): nothing is
// written into the user's folder. Copied files get the epoch as their time, so those layers
// are the same on every machine.
package buildkit
