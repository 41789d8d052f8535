package agent

// ActionError is a start-up or run failure upstream's agent reports as an
// error log line named for the action (its die(): "datastore-directory-stat",
// "mutual tls config", "policy-client-get-policies", "ifrit monitor") before
// exiting 1, rather than on stderr. The main logs it so.
type ActionError struct {
	Action string
	Err    error
}

func (e *ActionError) Error() string { return e.Action + ": " + e.Err.Error() }
func (e *ActionError) Unwrap() error { return e.Err }
