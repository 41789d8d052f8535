package internalapi

import (
	"strconv"

	"github.com/netman-release/netman/src/jsonenc"
	"github.com/netman-release/netman/src/policy"
)

// appendSecurityGroups writes upstream's security_groups page,
// {"next":N,"security_groups":[...]}, byte for byte as encoding/json would
// encode upstream's structs, except that missing space lists are [] (the
// store always has arrays, so upstream never produced null either).
func appendSecurityGroups(buf []byte, groups []policy.SecurityGroup, next int) []byte {
	buf = append(buf, `{"next":`...)
	buf = strconv.AppendInt(buf, int64(next), 10)
	buf = append(buf, `,"security_groups":[`...)
	for i, g := range groups {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"guid":`...)
		buf = jsonenc.AppendString(buf, g.GUID)
		buf = append(buf, `,"name":`...)
		buf = jsonenc.AppendString(buf, g.Name)
		buf = append(buf, `,"rules":`...)
		buf = jsonenc.AppendString(buf, g.Rules)
		buf = append(buf, `,"staging_default":`...)
		buf = strconv.AppendBool(buf, g.StagingDefault)
		buf = append(buf, `,"running_default":`...)
		buf = strconv.AppendBool(buf, g.RunningDefault)
		buf = append(buf, `,"staging_space_guids":`...)
		buf = appendStrings(buf, g.StagingSpaceGUIDs)
		buf = append(buf, `,"running_space_guids":`...)
		buf = appendStrings(buf, g.RunningSpaceGUIDs)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}

func appendStrings(buf []byte, list []string) []byte {
	buf = append(buf, '[')
	for i, s := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = jsonenc.AppendString(buf, s)
	}
	return append(buf, ']')
}
