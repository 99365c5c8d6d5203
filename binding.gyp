{
  "targets": [
    {
      "target_name": "etz_original_dst",
      "sources": ["native/original_dst.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
