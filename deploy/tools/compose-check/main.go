// compose-check validates docker-compose files against the Compose
// Specification with compose-go (the loader Docker Compose itself uses) and,
// on success, prints the resolved project as JSON for further checks.
//
//	compose-check [-q] FILE [FILE...]
//
// Exit status: 0 valid, 1 invalid (the reason on stderr), 2 usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-q] FILE [FILE...]")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	files := flag.Args()
	// Interpolation uses only the defaults written in the file: the result must
	// not depend on the environment of whoever runs the check.
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithName("wyvern"),
		cli.WithEnv([]string{}),
		cli.WithConsistency(true),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %s: %v\n", files[0], err)
		os.Exit(1)
	}
	if *quiet {
		return
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
	os.Stdout.Write([]byte("\n"))
}
