/*
 * errors.c -- pw_strerror: the PW_* codes of include/pwasm.h in words.
 */
#include "pwasm.h"

const char *pw_strerror(int code) {
    switch (code) {
    case PW_OK:
        return "success";
    case PW_EINVAL:
        return "invalid argument";
    case PW_ENOMEM:
        return "out of memory";
    case PW_EIO:
        return "file could not be read or written";
    case PW_ELOAD:
        return "module refused";
    case PW_ECOMPILE:
        return "module could not be compiled";
    case PW_ETRAP:
        return "plugin trapped";
    case PW_EPLUGIN:
        return "plugin refused to start";
    case PW_EDEAD:
        return "plugin VM is dead";
    }
    return "unknown error";
}
