package engine_test

import "os"

func osWriteFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }
