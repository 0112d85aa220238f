module github.com/libbpf/blazesym/go

go 1.25.0
