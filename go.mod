module github.com/nixlarder/larder

go 1.26.8

require github.com/klauspost/compress v1.20.4

require (
	github.com/mattn/go-sqlite3 v1.14.53 // indirect
	golang.org/x/sync v0.25.0 // indirect
)
