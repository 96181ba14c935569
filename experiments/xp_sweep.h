/* xp_sweep.h — parameter sweeps: a sweep file names a tool, a base config and parameter lists;
 * the runner expands the cartesian product into points, each run once, atomically.
 *
 * Sweep file (INI, parsed by kv_config):
 *   [sweep]
 *   name    = ca-policies              ; results go to <out>/<name>/<point-id>/
 *   tool    = kvsim                    ; an executable in the tools directory (build/bin)
 *   args    = -c {config} -o {out}     ; argument template, see below
 *   config  = base.ini                 ; (optional) base tool config, relative to this file
 *   seeds   = 1, 2, 3                  ; (optional) one point per seed: sim.seed and {seed}
 *   results = summary.csv              ; (optional) the file analysis aggregates per point
 *   [vary]                             ; one list per parameter; the product is swept
 *   cache.policy = lru, fifo, scheduler   ; dotted keys are config overrides (section.key)
 *   file         = a.h5, b.h5             ; plain keys are template variables ({file})
 *   [fixed]                            ; overrides applied to every point
 *   workload.sessions = 9000
 *   [quick] / [full]                   ; scale: keys replace [vary] lists, [fixed] values or
 *                                      ; `seeds`; other dotted keys are added to [fixed]
 * Zipped parameters: a key "k1+k2" takes values "v1/v2": the components vary together (e.g.
 *   sim.model+sim.n_gpus = llama-2-13b/2, llama-65b/4).
 * Lists: "a, b, c"; "range(start, stop, step)" (stop inclusive when hit exactly);
 * "lin(a, b, n)" (n evenly spaced); "geom(a, b, n)" (n log-spaced, a and b > 0).
 * Template variables: {config} (the point's config file), {out} (its output directory), {seed},
 * {src} (the source tree), {bin} (the tools directory), {sweepdir}, {env:NAME} (an environment
 * variable; unset is an error), and every plain [vary] key.
 *
 * A point's id is a readable slug of its assignment ("cache.policy=lru_seed=1"), so resuming a
 * sweep whose lists were reordered or extended redoes nothing that is finished. Whether a
 * finished point is still valid is decided by the runner (sweep.c): its config and command, the
 * tool's executable and the content of every file the tool read (KVLAB_DEPFILE, kv_fs.h). */
#ifndef XP_SWEEP_H
#define XP_SWEEP_H

#include <stdint.h>

#include "kv_config.h"
#include "kv_err.h"

#define XP_MAX_PARAMS 16
#define XP_MAX_VALUES 256
#define XP_MAX_SEEDS 64
#define XP_MAX_ZIPPED 16                               /* keys zipped into one parameter */
#define XP_MAX_ASSIGN (XP_MAX_PARAMS * XP_MAX_ZIPPED)  /* components of a point */

typedef struct xp_param {
  char key[128];
  int n_values;
  char values[XP_MAX_VALUES][128];
} xp_param;

typedef struct xp_sweep {
  char path[4096];        /* the sweep file */
  char dir[4096];         /* its directory */
  char name[128];
  char tool[128];
  char args[2048];
  char base_config[4096]; /* resolved path, or empty */
  char results[256];      /* per-point result file for analysis, or empty */
  char scale[32];         /* "" (none), "quick" or "full" */
  char src[4096];         /* the source tree, for {src} in config values (set by the runner) */
  kv_config *fixed;       /* section.key = value overrides (as entries of section "fixed") */
  xp_param params[XP_MAX_PARAMS];
  int n_params;
  int64_t seeds[XP_MAX_SEEDS];
  int n_seeds;            /* 0: no seed dimension */
} xp_sweep;

/* One point: the index of each parameter's value and the seed index. */
typedef struct xp_point {
  int64_t index;
  int value_idx[XP_MAX_PARAMS];
  int seed_idx;           /* -1 when the sweep has no seeds */
  char id[512];
} xp_point;

/* One parameter of a point with zipped keys split: "k1+k2" = "v1/v2" gives k1 = v1, k2 = v2 (a
 * single key keeps its whole value, '/' included). */
typedef struct xp_assign {
  char key[128];
  char value[128];
} xp_assign;

/* The point's assignment, parameter by parameter and component by component: the one place
 * that reads the zip syntax (the runner writes it to point.ini's [assign] for analysis). Returns
 * the count (at most cap). Dotted keys are config overrides, plain keys template variables. */
int xp_point_assignment(const xp_sweep *s, const xp_point *p, xp_assign *out, int cap);

/* Expands a list expression into out (at most cap values). Returns the count or a negative
 * status with err naming `what`. */
int xp_expand_list(const char *expr, char out[][128], int cap, const char *what, kv_error *err);

/* Loads and checks a sweep file; `scale` may be NULL/"" or the name of a scale section.
 * On success the caller frees with xp_sweep_free. */
int xp_sweep_load(const char *path, const char *scale, xp_sweep *s, kv_error *err);
void xp_sweep_free(xp_sweep *s);

/* Number of points (product of list lengths times seeds). */
int64_t xp_sweep_n_points(const xp_sweep *s);
/* Point i (0 <= i < n) in a fixed order (last parameter fastest, seeds innermost). */
void xp_sweep_point(const xp_sweep *s, int64_t i, xp_point *p);

/* The point's tool config: the base config (if any) + [fixed] + its dotted assignments + seed
 * (sim.seed). In every value, {sweepdir}, {configdir} (the base config's directory) and {src}
 * are replaced, so that configs can name files beside them. Caller frees the returned config
 * with kv_config_free. */
int xp_point_config(const xp_sweep *s, const xp_point *p, kv_config **out, kv_error *err);

/* Expands the args template into argv-style words (split on spaces, after substitution).
 * words/cap: caller storage; returns the word count or a negative status. */
int xp_point_argv(const xp_sweep *s, const xp_point *p, const char *config_path,
                  const char *out_dir, const char *src_dir, const char *bin_dir, char **words,
                  int cap, char *store, size_t store_cap, kv_error *err);

#endif /* XP_SWEEP_H */
