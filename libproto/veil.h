/* libveil: the veil protocol, pure (no I/O, no clock, no globals).  Call veil_init() first. */
#ifndef VEIL_H
#define VEIL_H

#include "common.h"
#include "ids.h"
#include "card.h"
#include "frame.h"
#include "reasm.h"
#include "replay.h"
#include "chain.h"
#include "pair.h"
#include "agree.h"
#include "update.h"
#include "reset.h"
#include "file.h"

#endif
