/*
 * mt_pc_counts.c: a QEMU TCG plugin that counts how often every guest instruction executes.
 *
 * Built by benchmarks/pc_profile.py as a host shared object and loaded with
 * `qemu-system-arm ... -plugin <so>,out=<file>`. Each translated block gets an inline 64-bit
 * counter (no helper call per instruction); at exit the plugin writes one line per instruction
 * address, "<hex vaddr> <count>", summing the blocks that contain it (a block may be translated
 * more than once). Instructions per address = executions of the blocks that hold it, which is
 * what -icount charges (up to a block left early by an exception).
 *
 * The plugin API of QEMU 7.2 (version 1) is declared here rather than taken from qemu-plugin.h,
 * which Debian does not ship; only the calls below are used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

typedef struct block {
    uint64_t count; /* executions, incremented inline by the translated code */
    size_t n;
    struct block *next;
    uint32_t pc[]; /* the block's instruction addresses */
} block;

static block *blocks;
static char out_path[4096] = "pc_counts.txt";

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const size_t n = qemu_plugin_tb_n_insns(tb);
    block *b = calloc(1, sizeof(block) + n * sizeof(uint32_t));
    size_t i;
    (void)id;
    if (b == NULL) {
        abort();
    }
    b->n = n;
    for (i = 0; i < n; ++i) {
        b->pc[i] = (uint32_t)qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i));
    }
    b->next = blocks; /* translation runs under QEMU's lock; a single vCPU on these boards */
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void on_plugin_exit(qemu_plugin_id_t id, void *userdata)
{
    FILE *f = fopen(out_path, "w");
    block *b;
    size_t i;
    (void)id;
    (void)userdata;
    if (f == NULL) {
        return;
    }
    for (b = blocks; b != NULL; b = b->next) {
        if (b->count == 0) {
            continue;
        }
        for (i = 0; i < b->n; ++i) {
            fprintf(f, "%08x %llu\n", (unsigned)b->pc[i], (unsigned long long)b->count);
        }
    }
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            strncpy(out_path, argv[i] + 4, sizeof(out_path) - 1);
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
