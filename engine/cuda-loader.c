/* Finds and loads the CUDA backend module (libdiat-cuda.so). libdiat itself
 * never links the CUDA runtime: a machine without a driver or a device must
 * still load the library, so the backend lives in a module opened on demand.
 * It is looked for, in order, at $DIAT_CUDA_MODULE, beside this library in
 * the build tree (cuda/), and at the installed path meson gives. */
#define _GNU_SOURCE /* dladdr */
#include "context.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODULE_NAME "libdiat-cuda.so"

typedef const diat_backend *(*module_entry_fn)(char *why, size_t why_size);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const diat_backend *loaded_backend;
static char load_failure[200];

/* Try one path; 0 when the module loaded (whether or not a device exists). */
static int try_module(const char *path)
{
    void *module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!module) {
        /* A module that exists but cannot load (no libcudart, say) is worth
         * naming; one that is simply not there is the next path's turn. */
        const char *reason = dlerror();
        if (reason && !strstr(reason, "No such file"))
            snprintf(load_failure, sizeof load_failure, "%s", reason);
        return -1;
    }
    module_entry_fn entry = (module_entry_fn)(uintptr_t)dlsym(module, "diat_cuda_module_backend");
    if (!entry) {
        snprintf(load_failure, sizeof load_failure, "%s has no entry point", path);
        dlclose(module);
        return -1;
    }
    loaded_backend = entry(load_failure, sizeof load_failure);
    /* Kept open even without a device: its code may have registered with the
     * CUDA runtime, which must not be unloaded under it. */
    return 0;
}

static void load_module(void)
{
    snprintf(load_failure, sizeof load_failure, "this libdiat was built without CUDA");
    const char *forced = getenv("DIAT_CUDA_MODULE");
    if (forced && *forced) {
        if (try_module(forced) != 0 && !strstr(load_failure, forced))
            snprintf(load_failure, sizeof load_failure, "cannot load %s", forced);
        return;
    }
#ifdef DIAT_CUDA_BUILT
    Dl_info self;
    if (dladdr((void *)diat_cuda_backend_load, &self) && self.dli_fname) {
        char path[4096];
        const char *slash = strrchr(self.dli_fname, '/');
        int dir_len = slash ? (int)(slash - self.dli_fname) : 1;
        const char *dir = slash ? self.dli_fname : ".";
        snprintf(path, sizeof path, "%.*s/cuda/" MODULE_NAME, dir_len, dir);
        if (try_module(path) == 0) return;
    }
    if (try_module(DIAT_CUDA_MODULE_PATH) == 0) return;
    if (!strstr(load_failure, "built without")) return;
    snprintf(load_failure, sizeof load_failure, "%s not found", DIAT_CUDA_MODULE_PATH);
#endif
}

const diat_backend *diat_cuda_backend_load(char *why, size_t why_size)
{
    pthread_once(&load_once, load_module);
    if (!loaded_backend && why && why_size) snprintf(why, why_size, "%s", load_failure);
    return loaded_backend;
}
