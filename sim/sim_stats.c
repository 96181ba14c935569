#include "sim_stats.h"

const char *const sim_stat_names[SIM_STAT_COUNT] = {
#define SIM__STAT_NAME(name, lname, desc) #lname,
    SIM_STATS(SIM__STAT_NAME)
#undef SIM__STAT_NAME
};

const char *const sim_stat_desc[SIM_STAT_COUNT] = {
#define SIM__STAT_DESC(name, lname, desc) desc,
    SIM_STATS(SIM__STAT_DESC)
#undef SIM__STAT_DESC
};
