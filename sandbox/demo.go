package sandbox

// DemoImage returns the built-in demonstration program.
func DemoImage() []byte { return nil }
