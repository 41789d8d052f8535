package metadata

// LogConfigKey is the metadata key of a container's log_config: a JSON
// string, in the store as in Garden's container properties.
const LogConfigKey = "log_config"

// LogConfig is the log_config Diego's executor sets on a container
// (executor.LogConfig): the app, instance index, log source and the tags
// (app_name, space_name, ...) app log lines are sent with.
type LogConfig struct {
	GUID       string            `json:"guid"`
	Index      int               `json:"index"`
	SourceName string            `json:"source_name"`
	Tags       map[string]string `json:"tags"`
}
