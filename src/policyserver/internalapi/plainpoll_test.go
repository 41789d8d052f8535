package internalapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPlainPollCacheSharesOneReadPerTTL(t *testing.T) {
	reads := 0
	value := int64(1)
	read := func(context.Context) (int64, error) { reads++; return value, nil }
	c := &plainPollCache{ttl: 40 * time.Millisecond}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if v, err := c.get(ctx, read); err != nil || v != 1 {
			t.Fatalf("get = %d, %v", v, err)
		}
	}
	if reads != 1 {
		t.Fatalf("%d reads within the TTL, want 1", reads)
	}
	value = 2
	time.Sleep(50 * time.Millisecond)
	if v, _ := c.get(ctx, read); v != 2 || reads != 2 {
		t.Fatalf("after the TTL got %d with %d reads, want 2 with 2", v, reads)
	}
	boom := errors.New("db down")
	time.Sleep(50 * time.Millisecond)
	if _, err := c.get(ctx, func(context.Context) (int64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed read was not reported: %v", err)
	}
	var off *plainPollCache
	if _, err := off.get(ctx, read); err != nil || reads != 3 {
		t.Fatalf("a nil cache must read every time (reads %d, err %v)", reads, err)
	}
}
