// The replayer's end of the socket it plays the kernel on (src/replay/link.ts): readiness from the
// JS thread's own event loop instead of one thread-pool read per reply.
#pragma once

#include <napi.h>

namespace fusetrace {

// The ReplaySocket class for the addon's exports (native/replay_socket.cc). JS thread only.
Napi::Function DefineReplaySocket(Napi::Env env);

}  // namespace fusetrace
