package mirror

import "testing"

func TestRenderCacheGenerations(t *testing.T) {
	var c renderCache
	gen := c.gen.Load()
	c.put("h", []byte("narinfo"), gen)
	if b, ok := c.get("h"); !ok || string(b) != "narinfo" {
		t.Fatal("a fresh entry was not served")
	}
	c.invalidate()
	if _, ok := c.get("h"); ok {
		t.Fatal("an entry survived invalidation")
	}
	// A render that began before an invalidation must not be served.
	stale := c.gen.Load()
	c.invalidate()
	c.put("h", []byte("old"), stale)
	if _, ok := c.get("h"); ok {
		t.Fatal("a render from before the last change was served")
	}
}
