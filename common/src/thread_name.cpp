#include "vidfarm/common/thread_name.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace vidfarm {

void NameThisThread(std::string_view name) {
  // The main thread's name is the process's (`ps`, `pgrep vidfarm`): left alone.
  if (static_cast<pid_t>(syscall(SYS_gettid)) == getpid()) return;
  std::string n(name.substr(0, 15));
  (void)pthread_setname_np(pthread_self(), n.c_str());
}

}  // namespace vidfarm
