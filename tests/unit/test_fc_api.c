/*
 * Firecracker API requests and responses against the shapes of Firecracker's
 * published specification (swagger/firecracker.yaml): for each request kiln
 * sends, the method and path, that every property the specification marks
 * required is there with its type, that enums hold allowed values, and that
 * nothing outside the definition's properties is sent (Firecracker rejects
 * unknown fields). Written from the definitions MachineConfiguration,
 * BootSource, Drive, Vsock, InstanceActionInfo, Vm, SnapshotCreateParams,
 * SnapshotLoadParams, MemoryBackend, VsockOverride and Error.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "sandbox/fc_api.h"

/* One definition: its properties (name, JSON type), which are required,
 * and for string enums the allowed values ("a|b|c"). */
struct prop {
    const char *name;
    json_type type;
    int required;
    const char *allowed;
};

static const struct kiln_fc_vm vm = {
    .vcpus = 2,
    .mem_mib = 768,
    .kernel = "/k/vmlinux",
    .initrd = "/k/initramfs.cpio",
    .boot_args = "console=ttyS0 kiln.chan=vsock:1024",
    .image = "/k/runtime.squashfs",
    .guest_cid = 3,
    .vsock_uds = "/s/v.sock",
    .snapshot = "/s/snap.state",
    .mem_file = "/s/snap.mem",
};

/* Split the request into method, path and JSON body; check the HTTP. */
static json_t *request(enum kiln_fc_op op, const char *method, const char *path)
{
    size_t len;
    char *req = kiln_fc_request(op, &vm, &len);
    assert_non_null(req);
    assert_int_equal(strlen(req), len);
    char line[128];
    snprintf(line, sizeof(line), "%s %s HTTP/1.1\r\n", method, path);
    assert_memory_equal(req, line, strlen(line));
    assert_non_null(strstr(req, "\r\nContent-Type: application/json\r\n"));
    char *body = strstr(req, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    const char *cl = strstr(req, "Content-Length: ");
    assert_non_null(cl);
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    assert_non_null(j);
    free(req);
    return j;
}

static void check_shape(json_t *obj, const struct prop *props, size_t n)
{
    assert_true(json_is_object(obj));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(obj, props[i].name);
        if (v == NULL) {
            if (props[i].required)
                fail_msg("required property %s is missing", props[i].name);
            continue;
        }
        int type = json_typeof(v);
        if (props[i].type == JSON_TRUE) /* boolean */
            assert_true(json_is_boolean(v));
        else
            assert_int_equal(type, props[i].type);
        if (props[i].allowed != NULL) {
            char want[128];
            snprintf(want, sizeof(want), "|%s|", props[i].allowed);
            char got[64];
            snprintf(got, sizeof(got), "|%s|", json_string_value(v));
            if (strstr(want, got) == NULL)
                fail_msg("%s = %s is not one of %s", props[i].name, json_string_value(v), props[i].allowed);
        }
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (i < n && strcmp(props[i].name, key) != 0)
            i++;
        if (i == n)
            fail_msg("property %s is not in the definition", key);
    }
}

static void test_machine_config(void **state)
{
    (void)state;
    static const struct prop p[] = {
        {"vcpu_count", JSON_INTEGER, 1, NULL},
        {"mem_size_mib", JSON_INTEGER, 1, NULL},
        {"smt", JSON_TRUE, 0, NULL},
        {"cpu_template", JSON_STRING, 0, NULL},
        {"track_dirty_pages", JSON_TRUE, 0, NULL},
        {"huge_pages", JSON_STRING, 0, "None|Transparent|2M"},
    };
    json_t *j = request(KILN_FC_MACHINE_CONFIG, "PUT", "/machine-config");
    check_shape(j, p, 6);
    assert_int_equal(json_integer_value(json_object_get(j, "vcpu_count")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "mem_size_mib")), 768);
    json_decref(j);
}

static void test_boot_source(void **state)
{
    (void)state;
    static const struct prop p[] = {
        {"kernel_image_path", JSON_STRING, 1, NULL},
        {"initrd_path", JSON_STRING, 0, NULL},
        {"boot_args", JSON_STRING, 0, NULL},
    };
    json_t *j = request(KILN_FC_BOOT_SOURCE, "PUT", "/boot-source");
    check_shape(j, p, 3);
    assert_string_equal(json_string_value(json_object_get(j, "initrd_path")), "/k/initramfs.cpio");
    assert_string_equal(json_string_value(json_object_get(j, "boot_args")), vm.boot_args);
    json_decref(j);
}

static void test_drive(void **state)
{
    (void)state;
    static const struct prop p[] = {
        {"drive_id", JSON_STRING, 1, NULL},
        {"is_root_device", JSON_TRUE, 1, NULL},
        {"partuuid", JSON_STRING, 0, NULL},
        {"cache_type", JSON_STRING, 0, "Unsafe|Writeback"},
        {"is_read_only", JSON_TRUE, 0, NULL},
        {"path_on_host", JSON_STRING, 0, NULL},
        {"rate_limiter", JSON_OBJECT, 0, NULL},
        {"io_engine", JSON_STRING, 0, "Sync|Async"},
        {"socket", JSON_STRING, 0, NULL},
    };
    json_t *j = request(KILN_FC_DRIVE_IMAGE, "PUT", "/drives/rootfs");
    check_shape(j, p, 9);
    /* the path's {drive_id} and the body's agree; the image is read-only */
    assert_string_equal(json_string_value(json_object_get(j, "drive_id")), "rootfs");
    assert_true(json_is_true(json_object_get(j, "is_read_only")));
    assert_true(json_is_false(json_object_get(j, "is_root_device")));
    json_decref(j);
}

static void test_vsock(void **state)
{
    (void)state;
    static const struct prop p[] = {
        {"guest_cid", JSON_INTEGER, 1, NULL},
        {"uds_path", JSON_STRING, 1, NULL},
        {"vsock_id", JSON_STRING, 0, NULL},
    };
    json_t *j = request(KILN_FC_VSOCK, "PUT", "/vsock");
    check_shape(j, p, 3);
    assert_true(json_integer_value(json_object_get(j, "guest_cid")) >= 3); /* minimum: 3 */
    json_decref(j);
}

static void test_actions_and_vm_state(void **state)
{
    (void)state;
    static const struct prop action[] = {
        {"action_type", JSON_STRING, 1, "FlushMetrics|InstanceStart|SendCtrlAltDel"},
    };
    static const struct prop vmstate[] = {{"state", JSON_STRING, 1, "Paused|Resumed"}};
    json_t *j = request(KILN_FC_START, "PUT", "/actions");
    check_shape(j, action, 1);
    json_decref(j);
    j = request(KILN_FC_PAUSE, "PATCH", "/vm");
    check_shape(j, vmstate, 1);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "Paused");
    json_decref(j);
}

static void test_snapshots(void **state)
{
    (void)state;
    static const struct prop create[] = {
        {"mem_file_path", JSON_STRING, 1, NULL},
        {"snapshot_path", JSON_STRING, 1, NULL},
        {"snapshot_type", JSON_STRING, 0, "Full|Diff"},
    };
    static const struct prop load[] = {
        {"snapshot_path", JSON_STRING, 1, NULL},
        {"enable_diff_snapshots", JSON_TRUE, 0, NULL},
        {"track_dirty_pages", JSON_TRUE, 0, NULL},
        {"mem_file_path", JSON_STRING, 0, NULL},
        {"mem_backend", JSON_OBJECT, 0, NULL},
        {"resume_vm", JSON_TRUE, 0, NULL},
        {"network_overrides", JSON_ARRAY, 0, NULL},
        {"vsock_override", JSON_OBJECT, 0, NULL},
        {"clock_realtime", JSON_TRUE, 0, NULL},
    };
    static const struct prop backend[] = {
        {"backend_type", JSON_STRING, 1, "File|Uffd"},
        {"backend_path", JSON_STRING, 1, NULL},
    };
    static const struct prop override[] = {{"uds_path", JSON_STRING, 1, NULL}};
    json_t *j = request(KILN_FC_SNAPSHOT_CREATE, "PUT", "/snapshot/create");
    check_shape(j, create, 3);
    json_decref(j);
    j = request(KILN_FC_SNAPSHOT_LOAD, "PUT", "/snapshot/load");
    check_shape(j, load, 9);
    /* exactly one of mem_file_path and mem_backend */
    assert_null(json_object_get(j, "mem_file_path"));
    check_shape(json_object_get(j, "mem_backend"), backend, 2);
    check_shape(json_object_get(j, "vsock_override"), override, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "vsock_override"), "uds_path")),
                        "/s/v.sock");
    assert_true(json_is_true(json_object_get(j, "resume_vm")));
    json_decref(j);
}

static void test_responses(void **state)
{
    (void)state;
    int status = 0;
    char fault[128];
    const char *ok = "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n";
    assert_int_equal(kiln_fc_response(ok, strlen(ok), &status, fault, sizeof(fault)), 1);
    assert_int_equal(status, 204);
    /* an Error body: its fault_message is the reason */
    const char *bad = "HTTP/1.1 400 \r\nServer: Firecracker API\r\nContent-Type: application/json\r\n"
                      "Content-Length: 53\r\n\r\n{\"fault_message\":\"The kernel file cannot be opened.\"}";
    assert_int_equal(kiln_fc_response(bad, strlen(bad), &status, fault, sizeof(fault)), 1);
    assert_int_equal(status, 400);
    assert_string_equal(fault, "The kernel file cannot be opened.");
    /* in pieces: not complete until the body is */
    assert_int_equal(kiln_fc_response(bad, 80, &status, fault, sizeof(fault)), 0);
    assert_int_equal(kiln_fc_response(bad, strlen(bad) - 10, &status, fault, sizeof(fault)), 0);
    /* not HTTP */
    assert_int_equal(kiln_fc_response("SSH-2.0-x\r\n", 11, &status, fault, sizeof(fault)), -EPROTO);
}

static void test_vsock_handshake(void **state)
{
    (void)state;
    char line[32];
    int n = kiln_fc_vsock_connect_line(line, sizeof(line), 1024);
    assert_int_equal(n, 13);
    assert_string_equal(line, "CONNECT 1024\n");
    assert_int_equal(kiln_fc_vsock_reply("OK 1073741824\n", 14), 1);
    assert_int_equal(kiln_fc_vsock_reply("OK 10", 5), 0);
    assert_int_equal(kiln_fc_vsock_reply("", 0), 0);
    /* Firecracker closes the connection, or says something else, when no
     * guest listens on the port */
    assert_int_equal(kiln_fc_vsock_reply("ERR\n", 4), -ECONNREFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_machine_config),
        cmocka_unit_test(test_boot_source),
        cmocka_unit_test(test_drive),
        cmocka_unit_test(test_vsock),
        cmocka_unit_test(test_actions_and_vm_state),
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_vsock_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
