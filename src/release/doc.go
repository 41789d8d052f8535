// Package release tests netman's BOSH release: the jobs in jobs/ and the
// packages in packages/ at the top of the repository.
//
// render.rb renders job templates as the BOSH director does (ERB from Ruby's
// standard library, with p, if_p, link, if_link and spec), and Render drives
// it from Go. The tests render every template of every job for a
// cf-deployment-like manifest, load each rendered daemon config with that
// daemon's own config loader, check the shell scripts with bash -n, check
// that the specs, templates, packages and packaging scripts agree, and
// compile every package from a staged release the way a BOSH compilation VM
// does. See docs/bosh-release.md.
package release
