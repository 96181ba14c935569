/* sweep — runs every point of a parameter sweep (xp_sweep.h), on all local cores by default and
 * across nodes when started with mpirun (points are dealt round-robin to ranks; each rank runs its
 * share with its own local workers). Each point runs its tool in a temporary directory that is
 * renamed into place only when the tool succeeds, so results are never half-written and a killed
 * sweep resumes where it stopped.
 *
 * A finished point is skipped only when nothing it depends on changed: its config and command
 * (point.ini: config_hash), the tool's executable, and the content of every file the tool read.
 * The tool lists those files itself: the runner sets KVLAB_DEPFILE for it, the project's readers
 * append each file they open (kv_fs_note_input), and the runner stores the list with a hash of
 * each file's content in the point's inputs.txt. `sweep --status` prints each point's state and,
 * for a stale one, what changed. Temporary folders (.<id>.tmp-<pid>-<rank>) left by a sweep that
 * was killed are removed when the next run starts. */
/* realpath (X/Open) on top of the POSIX 2008 the build defines */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef KVLAB_HAVE_MPI
#include <mpi.h>
#endif

#include "kv_config.h"
#include "kv_fs.h"
#include "kv_progress.h"
#include "xp_sweep.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: sweep [options] SWEEP.ini\n"
          "       mpirun -np N sweep [options] SWEEP.ini\n"
          "\n"
          "Runs each point of a parameter sweep once; resumable (finished points are skipped).\n"
          "\n"
          "  -o, --out DIR     results root (default: results); points go to DIR/<name>/<id>/\n"
          "  -j, --jobs N      points run at once on this node (default: its cores)\n"
          "      --scale NAME  apply the sweep's [NAME] section (e.g. quick, full)\n"
          "      --bin DIR     where the tools are (default: this program's directory)\n"
          "      --src DIR     the source tree for {src} (default: from this program's path)\n"
          "  -n, --dry-run     print the points and their commands; run nothing\n"
          "      --status      print each point's state (done, stale and why, failed, not run);\n"
          "                    run nothing\n"
          "  -q, --quiet       no progress on stderr\n"
          "  -h, --help        this text\n");
}

typedef struct {
  pid_t pid;
  int64_t point;
  char tmp[4096];
  char final[4096];
} job;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static uint64_t fnv1a(const char *s, uint64_t h) {
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

/* Directory of this executable. */
static void self_dir(char *buf, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
  if (n <= 0) {
    snprintf(buf, cap, ".");
    return;
  }
  buf[n] = '\0';
  char *s = strrchr(buf, '/');
  if (s) *s = '\0';
}

static void remove_tree(const char *path) {
  kv_error e = {0};
  if (kv_remove_tree(path, &e)) fprintf(stderr, "sweep: %s\n", e.msg);
}

/* Reads key "config_hash" from <dir>/point.ini; 0 when absent or unreadable. */
static uint64_t done_hash(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/point.ini", dir);
  kv_config *c;
  kv_error e = {0};
  if (kv_config_load(p, &c, &e)) return 0;
  const char *v = kv_config_get(c, "point", "config_hash");
  uint64_t h = v ? strtoull(v, NULL, 16) : 0;
  kv_config_free(c);
  return h;
}

/* ---- inputs: content hashes, cached for the duration of one sweep run ------------------------ */

typedef struct {
  char *path;
  uint64_t hash;
  int64_t size;
  int missing;
} hashed;

static hashed *g_hashes;
static size_t g_n_hashes, g_cap_hashes;

/* The content hash of `path` (computed once per run); NULL when it cannot be read. */
static const hashed *hash_of(const char *path) {
  for (size_t i = 0; i < g_n_hashes; i++) {
    if (!strcmp(g_hashes[i].path, path)) return g_hashes[i].missing ? NULL : &g_hashes[i];
  }
  if (g_n_hashes == g_cap_hashes) {
    size_t nc = g_cap_hashes ? g_cap_hashes * 2 : 64;
    hashed *nb = realloc(g_hashes, nc * sizeof *nb);
    if (!nb) return NULL;
    g_hashes = nb;
    g_cap_hashes = nc;
  }
  hashed *h = &g_hashes[g_n_hashes];
  memset(h, 0, sizeof *h);
  h->path = strdup(path);
  if (!h->path) return NULL;
  kv_error e = {0};
  h->missing = kv_hash_file(path, &h->hash, &h->size, &e) != 0;
  g_n_hashes++;
  return h->missing ? NULL : h;
}

static void hashes_free(void) {
  for (size_t i = 0; i < g_n_hashes; i++) free(g_hashes[i].path);
  free(g_hashes);
  g_hashes = NULL;
  g_n_hashes = g_cap_hashes = 0;
}

/* Writes <tmp>/inputs.txt from the tool's depfile <tmp>/inputs.list (duplicates and files inside
 * the point's own directory left out: its config is covered by config_hash) plus the tool. */
static int write_inputs(const char *tmp, const char *tool_path, kv_error *err) {
  char list[4300], path[4300];
  snprintf(list, sizeof list, "%s/inputs.list", tmp);
  char *text = NULL;
  size_t len = 0;
  if (kv_path_exists(list) && kv_read_file(list, &text, &len, err)) return KV_EIO;
  char tmp_abs[4200] = "";
  if (!realpath(tmp, tmp_abs)) snprintf(tmp_abs, sizeof tmp_abs, "%s", tmp);
  size_t tl = strlen(tmp_abs);
  char *buf = NULL;
  size_t blen = 0;
  FILE *f = open_memstream(&buf, &blen);
  if (!f) {
    free(text);
    return kv_error_set(err, KV_ENOMEM, "out of memory");
  }
  fprintf(f, "# what this point read: kind, FNV-1a 64 of the content, bytes, absolute path\n");
  const hashed *th = hash_of(tool_path);
  fprintf(f, "tool %016llx %lld %s\n", th ? (unsigned long long)th->hash : 0ULL,
          th ? (long long)th->size : -1LL, tool_path);
  int rc = 0;
  char *save = NULL;
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !rc;
       line = strtok_r(NULL, "\n", &save)) {
    if (!strncmp(line, tmp_abs, tl) && (line[tl] == '/' || line[tl] == '\0')) continue;
    int dup = 0;
    for (char *prev = text; prev < line && !dup; prev += strlen(prev) + 1) {
      dup = !strcmp(prev, line);
    }
    if (dup) continue;
    const hashed *h = hash_of(line);
    if (!h) {
      rc = kv_error_set(err, KV_EIO, "%s: the tool read it but it cannot be hashed now", line);
      break;
    }
    fprintf(f, "file %016llx %lld %s\n", (unsigned long long)h->hash, (long long)h->size, line);
  }
  fclose(f);
  free(text);
  if (!rc) {
    snprintf(path, sizeof path, "%s/inputs.txt", tmp);
    kv_atomic_file af;
    rc = kv_atomic_open(&af, path, err);
    if (!rc) {
      fputs(buf, af.f);
      rc = kv_atomic_commit(&af, err);
    }
  }
  free(buf);
  if (!rc) remove(list);
  return rc;
}

/* Why the finished point in `dir` is out of date (reason[0] == '\0' when it is not): its
 * inputs.txt against the files as they are now. */
static void inputs_changed(const char *dir, const char *tool_path, char *reason, size_t cap) {
  reason[0] = '\0';
  char p[4300];
  snprintf(p, sizeof p, "%s/inputs.txt", dir);
  char *text;
  size_t len;
  kv_error e = {0};
  if (kv_read_file(p, &text, &len, &e)) {
    snprintf(reason, cap, "no record of its inputs (inputs.txt; run by an older sweep)");
    return;
  }
  size_t used = 0;
  int n_changed = 0, saw_tool = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') continue;
    char kind[8];
    unsigned long long hv;
    long long size;
    int off = 0;
    if (sscanf(line, "%7s %llx %lld %n", kind, &hv, &size, &off) != 3 || off == 0) {
      snprintf(reason, cap, "inputs.txt is damaged");
      break;
    }
    const char *file = line + off;
    const char *why = NULL;
    if (!strcmp(kind, "tool")) {
      saw_tool = 1;
      if (strcmp(file, tool_path)) why = "tool moved";
      file = tool_path;
    }
    const hashed *h = hash_of(file);
    if (!why && !h) why = "missing";
    else if (!why && (h->hash != hv || h->size != size)) why = "changed";
    if (!why) continue;
    if (n_changed++ < 4 && used < cap) {
      used += (size_t)snprintf(reason + used, cap - used, "%s%s %s: %s", used ? "; " : "",
                               !strcmp(kind, "tool") ? "tool" : "input", file, why);
    }
  }
  if (!reason[0] && !saw_tool) snprintf(reason, cap, "inputs.txt names no tool");
  if (n_changed > 4 && used < cap) {
    snprintf(reason + used, cap - used, "; and %d more", n_changed - 4);
  }
  free(text);
}

typedef enum { ST_NOT_RUN, ST_DONE, ST_STALE, ST_FAILED } point_state;

/* State of the point whose result folder is `final` and whose config/command hash is `hash`;
 * for ST_STALE (and ST_FAILED) `reason` says why. */
static point_state state_of(const char *final, uint64_t hash, const char *tool_path,
                            char *reason, size_t cap) {
  char p[4300];
  reason[0] = '\0';
  snprintf(p, sizeof p, "%s/done", final);
  if (!kv_path_exists(p)) {
    snprintf(p, sizeof p, "%s.failed", final);
    if (kv_path_exists(p)) {
      snprintf(reason, cap, "logs in %s", p);
      return ST_FAILED;
    }
    if (kv_path_exists(final)) {
      snprintf(reason, cap, "incomplete result folder");
      return ST_STALE;
    }
    return ST_NOT_RUN;
  }
  if (done_hash(final) != hash) {
    snprintf(reason, cap, "config or command changed");
    return ST_STALE;
  }
  inputs_changed(final, tool_path, reason, cap);
  return reason[0] ? ST_STALE : ST_DONE;
}

/* Removes temporary folders ".<id>.tmp-<pid>-<rank>" under root whose process is gone (a killed
 * sweep); returns how many. A folder whose pid is alive here belongs to a running sweep. */
static int clean_stale_tmp(const char *root) {
  DIR *d = opendir(root);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *name = de->d_name;
    if (name[0] != '.') continue;
    const char *t = strstr(name, ".tmp-");
    const char *last = NULL;
    while (t) {
      last = t;
      t = strstr(t + 1, ".tmp-");
    }
    if (!last || last == name) continue;
    long pid;
    int rank, used = 0;
    if (sscanf(last, ".tmp-%ld-%d%n", &pid, &rank, &used) != 2 || last[used] != '\0' ||
        pid <= 0) {
      continue;
    }
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* still running */
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", root, name);
    kv_error e = {0};
    if (kv_remove_tree(path, &e)) fprintf(stderr, "sweep: %s\n", e.msg);
    else n++;
  }
  closedir(d);
  return n;
}

/* Prepares the point: its config text, argv and hash. */
typedef struct {
  char *config_text; /* malloc'ed, may be empty */
  char *words[256];
  char store[8192];
  int nwords;
  uint64_t hash;
} prepared;

static int prepare(const xp_sweep *s, const xp_point *p, const char *tmp, const char *src,
                   const char *bin, prepared *pr, kv_error *err) {
  memset(pr, 0, sizeof *pr);
  kv_config *c;
  int rc = xp_point_config(s, p, &c, err);
  if (rc) return rc;
  pr->config_text = kv_config_to_string(c);
  kv_config_free(c);
  if (!pr->config_text) return kv_error_set(err, KV_ENOMEM, "out of memory");
  char cfg_path[4200];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.ini", tmp);
  pr->nwords = xp_point_argv(s, p, cfg_path, tmp, src, bin, pr->words, 256, pr->store,
                             sizeof pr->store, err);
  if (pr->nwords < 0) return pr->nwords;
  /* The hash covers what determines the result: config and command (with the temporary
   * directory replaced by a placeholder, since it changes from run to run). */
  uint64_t h = fnv1a(pr->config_text, 1469598103934665603ULL);
  h = fnv1a(s->tool, h);
  for (int i = 0; i < pr->nwords; i++) {
    const char *w = pr->words[i];
    if (strstr(w, tmp) == w) h = fnv1a("{out}", h), w += strlen(tmp);
    h = fnv1a(w, h);
  }
  pr->hash = h ? h : 1;
  return 0;
}

static int write_text(const char *path, const char *text, kv_error *err) {
  kv_atomic_file af;
  int rc = kv_atomic_open(&af, path, err);
  if (rc) return rc;
  fputs(text, af.f);
  return kv_atomic_commit(&af, err);
}

static int start_point(const xp_sweep *s, const xp_point *p, const prepared *pr,
                       const char *bin, const char *tmp, const char *final_dir, pid_t *pid_out,
                       kv_error *err) {
  if (kv_mkdirs(tmp, err)) return KV_EIO;
  char path[4300];
  snprintf(path, sizeof path, "%s/config.ini", tmp);
  int rc = write_text(path, pr->config_text, err);
  if (rc) return rc;
  /* point.ini: the assignment, seed and command, for analysis and for resuming. */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return kv_error_set(err, KV_ENOMEM, "out of memory");
  fprintf(f, "[point]\nid = %s\nindex = %lld\nconfig_hash = %016llx\n", p->id,
          (long long)p->index, (unsigned long long)pr->hash);
  if (p->seed_idx >= 0) fprintf(f, "seed = %lld\n", (long long)s->seeds[p->seed_idx]);
  fprintf(f, "\n[params]\n");
  for (int k = 0; k < s->n_params; k++) {
    fprintf(f, "%s = %s\n", s->params[k].key, s->params[k].values[p->value_idx[k]]);
  }
  /* the same with zipped keys split (xp_point_assignment): what analysis reads, so that the
   * sweep syntax is parsed in one place */
  static xp_assign as[XP_MAX_ASSIGN];
  int na = xp_point_assignment(s, p, as, XP_MAX_ASSIGN);
  fprintf(f, "\n[assign]\n");
  for (int i = 0; i < na; i++) fprintf(f, "%s = %s\n", as[i].key, as[i].value);
  fprintf(f, "\n[sweep]\nname = %s\nfile = %s\ntool = %s\nscale = %s\nresults = %s\ncommand = %s",
          s->name, s->path, s->tool, s->scale[0] ? s->scale : "default", s->results, s->tool);
  /* The command as it ran, with the temporary directory written as the final one. */
  size_t tl = strlen(tmp);
  for (int i = 0; i < pr->nwords; i++) {
    const char *w = pr->words[i];
    if (strncmp(w, tmp, tl) == 0) fprintf(f, " %s%s", final_dir, w + tl);
    else fprintf(f, " %s", w);
  }
  fprintf(f, "\n");
  fclose(f);
  snprintf(path, sizeof path, "%s/point.ini", tmp);
  rc = write_text(path, buf, err);
  free(buf);
  if (rc) return rc;
  char exe[4300];
  snprintf(exe, sizeof exe, "%s/%s", bin, s->tool);
  if (access(exe, X_OK) != 0) {
    return kv_error_set(err, KV_ENOENT, "%s: tool '%s' not found in %s", s->path, s->tool, bin);
  }
  pid_t pid = fork();
  if (pid < 0) return kv_error_set(err, KV_EIO, "fork failed: %s", strerror(errno));
  if (pid == 0) {
    char lo[4300], le[4300];
    snprintf(lo, sizeof lo, "%s/stdout.log", tmp);
    snprintf(le, sizeof le, "%s/stderr.log", tmp);
    if (!freopen(lo, "w", stdout) || !freopen(le, "w", stderr)) _exit(126);
    char dep[4300];
    snprintf(dep, sizeof dep, "%s/inputs.list", tmp);
    if (setenv("KVLAB_DEPFILE", dep, 1) != 0) _exit(126);
    char *argv[258];
    argv[0] = exe;
    for (int i = 0; i < pr->nwords; i++) argv[i + 1] = pr->words[i];
    argv[pr->nwords + 1] = NULL;
    execv(exe, argv);
    fprintf(stderr, "sweep: exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  *pid_out = pid;
  return 0;
}

/* --status: one line per point, then the counts. */
static int print_status(const xp_sweep *s, const char *root, const char *src, const char *bin,
                        const char *tool_path, kv_error *err) {
  int64_t n = xp_sweep_n_points(s);
  long long count[4] = {0, 0, 0, 0};
  static const char *const names[4] = {"not run", "done", "stale", "failed"};
  for (int64_t i = 0; i < n; i++) {
    xp_point p;
    xp_sweep_point(s, i, &p);
    char final[4400], tmp[4400], why[1200];
    snprintf(final, sizeof final, "%s/%s", root, p.id);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-status", root, p.id);
    prepared pr;
    if (prepare(s, &p, tmp, src, bin, &pr, err)) {
      printf("%-40s error: %s\n", p.id, err->msg);
      free(pr.config_text);
      count[ST_FAILED]++;
      continue;
    }
    free(pr.config_text);
    point_state st = state_of(final, pr.hash, tool_path, why, sizeof why);
    count[st]++;
    printf("%-40s %s%s%s%s\n", p.id, names[st], why[0] ? " (" : "", why, why[0] ? ")" : "");
  }
  printf("sweep %s: %lld points: %lld done, %lld stale, %lld failed, %lld not run\n", s->name,
         (long long)n, count[ST_DONE], count[ST_STALE], count[ST_FAILED], count[ST_NOT_RUN]);
  return 0;
}

int main(int argc, char **argv) {
  int rank = 0, size = 1;
#ifdef KVLAB_HAVE_MPI
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
#endif
  const char *out = "results", *scale = NULL;
  char bin[4096], src[4096];
  self_dir(bin, sizeof bin);
  snprintf(src, sizeof src, "%s/../..", bin);
  long jobs = sysconf(_SC_NPROCESSORS_ONLN);
  int dry = 0, quiet = 0, want_status = 0;
  static const struct option opts[] = {
      {"out", required_argument, 0, 'o'},   {"jobs", required_argument, 0, 'j'},
      {"scale", required_argument, 0, 's'}, {"bin", required_argument, 0, 'b'},
      {"src", required_argument, 0, 'S'},   {"dry-run", no_argument, 0, 'n'},
      {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
      {"status", no_argument, 0, 'T'},
      {0, 0, 0, 0}};
  int c, bad = 0;
  while ((c = getopt_long(argc, argv, "o:j:nqh", opts, NULL)) != -1) {
    char *end;
    switch (c) {
      case 'o': out = optarg; break;
      case 's': scale = optarg; break;
      case 'b': snprintf(bin, sizeof bin, "%s", optarg); break;
      case 'S': snprintf(src, sizeof src, "%s", optarg); break;
      case 'n': dry = 1; break;
      case 'T': want_status = 1; break;
      case 'q': quiet = 1; break;
      case 'j':
        jobs = strtol(optarg, &end, 10);
        if (*end || jobs < 1 || jobs > 4096) {
          fprintf(stderr, "sweep: --jobs: '%s' is not a count in [1, 4096]\n", optarg);
          bad = 2;
        }
        break;
      case 'h': usage(stdout); bad = -1; break;
      default: usage(stderr); bad = 2;
    }
  }
  if (!bad && optind != argc - 1) {
    fprintf(stderr, "sweep: expected one sweep file (see --help)\n");
    bad = 2;
  }
  kv_error err = {0};
  xp_sweep sw;
  if (!bad && xp_sweep_load(argv[optind], scale, &sw, &err)) {
    fprintf(stderr, "sweep: %s\n", err.msg);
    bad = 2;
  }
  if (bad) {
#ifdef KVLAB_HAVE_MPI
    MPI_Finalize();
#endif
    return bad < 0 ? 0 : bad;
  }
  snprintf(sw.src, sizeof sw.src, "%s", src);
  int64_t n = xp_sweep_n_points(&sw);
  char root[4300];
  snprintf(root, sizeof root, "%s/%s", out, sw.name);
  /* The tool, by absolute path: its content is part of every point's key. */
  char tool_path[4300], exe_path[4300];
  snprintf(exe_path, sizeof exe_path, "%s/%s", bin, sw.tool);
  if (!realpath(exe_path, tool_path)) snprintf(tool_path, sizeof tool_path, "%s", exe_path);
  if (want_status) {
    int rc = print_status(&sw, root, src, bin, tool_path, &err);
    hashes_free();
    xp_sweep_free(&sw);
#ifdef KVLAB_HAVE_MPI
    MPI_Finalize();
#endif
    return rc;
  }
  if (!dry && kv_mkdirs(root, &err)) {
    fprintf(stderr, "sweep: %s\n", err.msg);
    return 1;
  }
  if (!dry && rank == 0) {
    int removed = clean_stale_tmp(root);
    if (removed && !quiet) {
      fprintf(stderr, "sweep: removed %d temporary folder%s left by a killed run\n", removed,
              removed == 1 ? "" : "s");
    }
  }
#ifdef KVLAB_HAVE_MPI
  MPI_Barrier(MPI_COMM_WORLD); /* no rank starts a point before the old folders are gone */
#endif
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int64_t mine = 0;
  for (int64_t i = rank; i < n; i += size) mine++;
  kv_progress prog;
  char label[200];
  snprintf(label, sizeof label, "sweep %s%s", sw.name, size > 1 ? " (this rank)" : "");
  if (!dry) kv_progress_init(&prog, label, mine, quiet);
  job *running = calloc((size_t)jobs, sizeof *running);
  long nrun = 0;
  long long n_done = 0, n_skip = 0, n_fail = 0;
  int64_t next = rank;
  char failed_ids[8][512];
  int nfail_ids = 0;
  while (!g_stop && (next < n || nrun > 0)) {
    /* Launch while there is room. */
    while (!g_stop && next < n && nrun < jobs) {
      xp_point p;
      xp_sweep_point(&sw, next, &p);
      int64_t idx = next;
      next += size;
      job *jb = &running[nrun];
      snprintf(jb->final, sizeof jb->final, "%s/%s", root, p.id);
      snprintf(jb->tmp, sizeof jb->tmp, "%s/.%s.tmp-%ld-%d", root, p.id, (long)getpid(), rank);
      prepared pr;
      if (prepare(&sw, &p, jb->tmp, src, bin, &pr, &err)) {
        fprintf(stderr, "sweep: point %s: %s\n", p.id, err.msg);
        free(pr.config_text);
        n_fail++;
        continue;
      }
      if (dry) {
        printf("%s:", p.id);
        printf(" %s", sw.tool);
        for (int i = 0; i < pr.nwords; i++) printf(" %s", pr.words[i]);
        printf("\n");
        free(pr.config_text);
        continue;
      }
      char why[1200];
      point_state ps = state_of(jb->final, pr.hash, tool_path, why, sizeof why);
      if (ps == ST_DONE) {
        n_skip++;
        free(pr.config_text);
        kv_progress_add(&prog, 1);
        continue;
      }
      if (kv_path_exists(jb->final)) {
        /* Out of date, or left incomplete: keep it aside, never delete. */
        char stale[4400];
        snprintf(stale, sizeof stale, "%s.stale-%ld", jb->final, (long)time(NULL));
        for (int k = 1; kv_path_exists(stale) && k < 1000; k++) {
          snprintf(stale, sizeof stale, "%s.stale-%ld-%d", jb->final, (long)time(NULL), k);
        }
        rename(jb->final, stale);
        fprintf(stderr, "sweep: %s: rerun (%s); old result moved to %s\n", p.id, why, stale);
      }
      if (start_point(&sw, &p, &pr, bin, jb->tmp, jb->final, &jb->pid, &err)) {
        fprintf(stderr, "sweep: point %s: %s\n", p.id, err.msg);
        free(pr.config_text);
        remove_tree(jb->tmp);
        n_fail++;
        if (err.code == KV_ENOENT) g_stop = 2; /* the tool is missing: no point going on */
        continue;
      }
      free(pr.config_text);
      jb->point = idx;
      nrun++;
    }
    if (nrun == 0) break;
    int status;
    pid_t pid = wait(&status);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (long k = 0; k < nrun; k++) {
      if (running[k].pid != pid) continue;
      job jb = running[k];
      running[k] = running[--nrun];
      int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      char path[4300];
      snprintf(path, sizeof path, "%s/done", jb.tmp);
      if (ok && write_inputs(jb.tmp, tool_path, &err) != 0) {
        fprintf(stderr, "sweep: %s: %s\n", strrchr(jb.final, '/') + 1, err.msg);
        ok = 0;
      }
      if (ok && write_text(path, "ok\n", &err) == 0 && rename(jb.tmp, jb.final) == 0) {
        n_done++;
      } else {
        char fail[4400];
        snprintf(fail, sizeof fail, "%s.failed", jb.final);
        remove_tree(fail);
        rename(jb.tmp, fail);
        if (nfail_ids < 8) {
          snprintf(failed_ids[nfail_ids++], 512, "%s (%s %d; logs in %s)",
                   strrchr(jb.final, '/') + 1, WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), fail);
        }
        n_fail++;
      }
      kv_progress_add(&prog, 1);
      break;
    }
  }
  if (g_stop == 1) {
    for (long k = 0; k < nrun; k++) kill(running[k].pid, SIGTERM);
    for (long k = 0; k < nrun; k++) {
      waitpid(running[k].pid, NULL, 0);
      remove_tree(running[k].tmp);
    }
    fprintf(stderr, "\nsweep: interrupted; finished points are kept, rerun to resume\n");
  }
  if (!dry) kv_progress_finish(&prog);
  for (int i = 0; i < nfail_ids; i++) fprintf(stderr, "sweep: FAILED %s\n", failed_ids[i]);
  long long tot[3] = {n_done, n_skip, n_fail}, all[3] = {n_done, n_skip, n_fail};
#ifdef KVLAB_HAVE_MPI
  MPI_Reduce(tot, all, 3, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
#endif
  (void)tot;
  if (rank == 0 && !dry) {
    fprintf(stderr, "sweep %s: %lld points: %lld run, %lld already done, %lld failed%s\n",
            sw.name, (long long)n, all[0], all[1], all[2],
            size > 1 ? " (all ranks)" : "");
  }
  free(running);
  hashes_free();
  xp_sweep_free(&sw);
  int rc = (all[2] > 0 || g_stop) ? 1 : 0;
#ifdef KVLAB_HAVE_MPI
  MPI_Finalize();
#endif
  return rc;
}
