/* Where the shipped model files are found: see model-files.h. */
#include "model-files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int diat_model_file_find(const char *name, char *path, size_t size, char *searched,
                         size_t searched_size)
{
    enum { MAX_DIRS = 8, DIR_SIZE = 4096 };
    char dirs[MAX_DIRS][DIR_SIZE];
    int count = 0;
    const char *env = getenv("DIAT_MODEL_PATH");
    for (const char *p = env; p && *p && count < MAX_DIRS - 3;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < DIR_SIZE) {
            memcpy(dirs[count], p, len);
            dirs[count++][len] = '\0';
        }
        p += len + (p[len] == ':');
    }
    char exe[DIR_SIZE - 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0'; /* the bin folder */
        if (snprintf(dirs[count], DIR_SIZE, "%s/../share/diat/models", exe) < DIR_SIZE) count++;
    }
#ifdef DIAT_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_MODEL_DIR) < DIR_SIZE) count++;
#endif
#ifdef DIAT_SOURCE_MODEL_DIR
    if (snprintf(dirs[count], DIR_SIZE, "%s", DIAT_SOURCE_MODEL_DIR) < DIR_SIZE) count++;
#endif
    size_t used = 0;
    searched[0] = '\0';
    for (int i = 0; i < count; i++) {
        int n = snprintf(path, size, "%s/%s", dirs[i], name);
        if (n > 0 && (size_t)n < size && access(path, R_OK) == 0) return 0;
        if (used < searched_size)
            used += (size_t)snprintf(searched + used, searched_size - used, "%s%s", i ? ", " : "",
                                     dirs[i]);
    }
    return -1;
}
