#ifndef MAIN_STORE_H
#define MAIN_STORE_H

#include "config.h"
#include "store.h"

/* main.c */

/* main_store.c */
void    policyd_check_loop(struct config *cfg, const struct store_url *url);
void    policyd_check_resolver(struct config *cfg, struct store_url *url);
void    policyd_check_reloadable(struct config *cfg, const char *path);

#endif
