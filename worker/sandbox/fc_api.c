#include "sandbox/fc_api.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *body_for(enum kiln_fc_op op, const struct kiln_fc_vm *vm, const char **method,
                        const char **path)
{
    *method = "PUT";
    switch (op) {
    case KILN_FC_MACHINE_CONFIG:
        *path = "/machine-config";
        return json_pack("{s:i,s:I,s:b}", "vcpu_count", vm->vcpus, "mem_size_mib",
                         (json_int_t)vm->mem_mib, "smt", 0);
    case KILN_FC_BOOT_SOURCE:
        *path = "/boot-source";
        return json_pack("{s:s,s:s,s:s}", "kernel_image_path", vm->kernel, "initrd_path",
                         vm->initrd, "boot_args", vm->boot_args);
    case KILN_FC_DRIVE_IMAGE:
        /* not the root device: the agent in the initramfs mounts it */
        *path = "/drives/rootfs";
        return json_pack("{s:s,s:s,s:b,s:b}", "drive_id", "rootfs", "path_on_host", vm->image,
                         "is_root_device", 0, "is_read_only", 1);
    case KILN_FC_VSOCK:
        *path = "/vsock";
        return json_pack("{s:i,s:s}", "guest_cid", (int)vm->guest_cid, "uds_path", vm->vsock_uds);
    case KILN_FC_START:
        *path = "/actions";
        return json_pack("{s:s}", "action_type", "InstanceStart");
    case KILN_FC_PAUSE:
        *method = "PATCH";
        *path = "/vm";
        return json_pack("{s:s}", "state", "Paused");
    case KILN_FC_SNAPSHOT_CREATE:
        *path = "/snapshot/create";
        return json_pack("{s:s,s:s,s:s}", "snapshot_type", "Full", "snapshot_path", vm->snapshot,
                         "mem_file_path", vm->mem_file);
    case KILN_FC_SNAPSHOT_LOAD:
        /* every restored VM gets its own vsock socket, not the template's */
        *path = "/snapshot/load";
        return json_pack("{s:s,s:{s:s,s:s},s:b,s:{s:s}}", "snapshot_path", vm->snapshot,
                         "mem_backend", "backend_type", "File", "backend_path", vm->mem_file,
                         "resume_vm", 1, "vsock_override", "uds_path", vm->vsock_uds);
    }
    return NULL;
}

char *kiln_fc_request(enum kiln_fc_op op, const struct kiln_fc_vm *vm, size_t *len)
{
    const char *method = NULL, *path = NULL;
    json_t *body = body_for(op, vm, &method, &path);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return NULL;
    char *req = NULL;
    int n = asprintf(&req,
                     "%s %s HTTP/1.1\r\n"
                     "Host: localhost\r\n"
                     "Accept: application/json\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "\r\n"
                     "%s",
                     method, path, strlen(text), text);
    free(text);
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return req;
}

struct resp {
    int complete;
    char body[4096];
    size_t blen;
};

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct resp *r = p->data;
    size_t room = sizeof(r->body) - 1 - r->blen;
    memcpy(r->body + r->blen, at, len < room ? len : room);
    r->blen += len < room ? len : room;
    return 0;
}

static int on_complete(http_parser *p)
{
    ((struct resp *)p->data)->complete = 1;
    return 0;
}

int kiln_fc_response(const char *buf, size_t len, int *status, char *fault, size_t faultlen)
{
    http_parser p;
    http_parser_settings s;
    struct resp r = {0};
    http_parser_init(&p, HTTP_RESPONSE);
    http_parser_settings_init(&s);
    s.on_body = on_body;
    s.on_message_complete = on_complete;
    p.data = &r;
    size_t used = http_parser_execute(&p, &s, buf, len);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != len)
        return -EPROTO;
    if (!r.complete)
        return 0;
    *status = (int)p.status_code;
    if (faultlen > 0)
        fault[0] = '\0';
    if (*status >= 300 && faultlen > 0) {
        json_t *j = json_loadb(r.body, r.blen, 0, NULL);
        const char *m = json_string_value(json_object_get(j, "fault_message"));
        snprintf(fault, faultlen, "%s", m ? m : "(no fault_message)");
        json_decref(j);
    }
    return 1;
}

int kiln_fc_vsock_connect_line(char *buf, size_t len, unsigned port)
{
    return snprintf(buf, len, "CONNECT %u\n", port);
}

int kiln_fc_vsock_reply(const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL)
        return len > 64 ? -ECONNREFUSED : 0;
    return len >= 3 && memcmp(buf, "OK ", 3) == 0 ? 1 : -ECONNREFUSED;
}
