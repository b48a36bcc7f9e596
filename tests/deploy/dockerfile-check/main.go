// dockerfile-check: BuildKit's own Dockerfile checks (what `docker build --check` runs) without
// a Docker daemon: parse, expand the build arguments, resolve every stage, and run the linter
// rules. Base images are neither pulled nor looked up (see offlineImages). Used by tests/deploy/test_static.py.
//
//	dockerfile-check [-build-arg NAME=VALUE]... Dockerfile
//
// Prints one line per warning or error; exit status 1 if there was any.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offlineImages stands in for the registry: every base image is an empty linux/amd64 image, so
// stages resolve without pulling anything (the checks are about the Dockerfile, not the bases).
type offlineImages struct{}

const emptyImage = `{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}`

func (offlineImages) ResolveImageConfig(
	_ context.Context, ref string, _ sourceresolver.Opt,
) (string, digest.Digest, []byte, error) {
	return ref, digest.FromString(emptyImage), []byte(emptyImage), nil
}

type buildArgs map[string]string

func (b buildArgs) String() string { return fmt.Sprint(map[string]string(b)) }
func (b buildArgs) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want NAME=VALUE, got %q", v)
	}
	b[name] = value
	return nil
}

func main() {
	args := buildArgs{}
	flag.Var(args, "build-arg", "a build argument, NAME=VALUE (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check [-build-arg NAME=VALUE]... Dockerfile")
		os.Exit(2)
	}
	dt, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sourceMap := llb.NewSourceMap(nil, flag.Arg(0), "Dockerfile", dt)
	sourceMap.Definition = &llb.Definition{}
	opt := dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: args},
		SourceMap:    sourceMap,
		MetaResolver: offlineImages{},
	}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failed := false
	for _, w := range results.Warnings {
		line := 0
		if len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		fmt.Printf("warning: %s (line %d): %s\n", w.RuleName, line, w.Detail)
		failed = true
	}
	if results.Error != nil {
		fmt.Printf("error: %s\n", results.Error.Message)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("ok")
}
