/* Text the kiln client shows on a terminal. */
#ifndef KILN_CLI_TEXT_H
#define KILN_CLI_TEXT_H

#include <stddef.h>

/* `s` as it may be printed on a terminal, in `buf` (len bytes, always
 * NUL-terminated; cut before a character that does not fit): UTF-8
 * characters stay, but control characters (C0, DEL, C1), the bidi
 * overrides and isolates, and bytes that are not UTF-8 become \xHH, so a
 * name from a file (a task id, a path) cannot move the cursor, recolour or
 * retitle the terminal, or read backwards. Returns buf. */
const char *kiln_shown(const char *s, char *buf, size_t len);

#endif
