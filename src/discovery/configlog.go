package discovery

import (
	"errors"
	"fmt"
	"io/fs"

	"code.cloudfoundry.org/lager/v3"
)

// LogConfigError logs a config file that could not be loaded as upstream
// does: "Could not read config file at path '<path>'" when the file is
// missing or unreadable, "Could not parse config file at path '<path>'"
// otherwise (bad JSON or invalid values).
func LogConfigError(logger lager.Logger, path string, err error) {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		logger.Error(fmt.Sprintf("Could not read config file at path '%s'", path), err)
		return
	}
	logger.Error(fmt.Sprintf("Could not parse config file at path '%s'", path), err)
}
