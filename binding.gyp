{
  "targets": [
    {
      "target_name": "fusetrace",
      "sources": [
        "native/binding.cc",
        "native/pump.cc",
        "native/attach.cc",
        "native/frame_sink.cc",
        "native/relay.cc",
        "native/ring_consumer.cc",
        "native/mount_util.cc",
        "native/supervisor.cc",
        "native/batcher.cc",
        "native/replay_socket.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-pthread"]
    },
    {
      "target_name": "fusetrace-exec",
      "type": "executable",
      "sources": ["native/exec_helper.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "fusetrace-preload",
      "type": "shared_library",
      "product_name": "fusetrace-preload",
      "product_prefix": "lib",
      "product_extension": "so",
      "sources": ["native/preload.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fPIC", "-fvisibility=default"],
      "ldflags": ["-pthread", "-ldl"]
    }
  ]
}
