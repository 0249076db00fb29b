/*
 * dcmi_power.c: an ipmi_sim plugin that answers DCMI Get Power Reading.
 *
 * Stock ipmi_sim has no DCMI handler.  Loaded with
 *     loadlib "/path/dcmi_power.so" "/path/reading"
 * in lan.conf, it registers a handler for the DCMI group extension (NetFn 0x2C, group
 * extension id 0xDC) and answers command 0x02 (Get Power Reading) with the power written
 * in the reading file: "<watts>" (measurement active) or "<watts> inactive".  The test
 * peer (tests/peers/ipmi_sim.py) rewrites that file to change the power at run time.
 * Every other DCMI command answers "invalid command" (0xC1), as on a BMC without it.
 *
 * Built at test time with gcc against the libopenipmi-dev headers; never committed as a
 * binary.  The symbols it calls are exported by the ipmi_sim executable itself.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#include <OpenIPMI/lanserv.h>
#include <OpenIPMI/mcserv.h>

#define DCMI_GROUP 0xdc
#define DCMI_GET_POWER_READING 0x02

static char *reading_file;

static void put16(unsigned char *p, unsigned int v) { p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; }

static void put32(unsigned char *p, unsigned long v)
{
    p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; p[2] = (v >> 16) & 0xff; p[3] = (v >> 24) & 0xff;
}

static void answer(unsigned char *rdata, unsigned int *rdata_len, unsigned char code)
{
    rdata[0] = code;
    *rdata_len = 1;
}

static void dcmi_handler(lmc_data_t *mc, msg_t *msg, unsigned char *rdata,
                         unsigned int *rdata_len, void *cb_data)
{
    unsigned int watts = 0;
    char state[16] = "";
    FILE *f;

    (void) cb_data;
    if (msg->cmd != DCMI_GET_POWER_READING) {
        handle_invalid_cmd(mc, rdata, rdata_len);
        return;
    }
    if (check_msg_length(msg, 4, rdata, rdata_len))
        return;
    if (msg->data[1] != 0x01) {             /* only "system power statistics" */
        answer(rdata, rdata_len, 0xcc);      /* invalid data field in request */
        return;
    }
    f = fopen(reading_file, "r");
    if (!f) {
        answer(rdata, rdata_len, 0xd5);      /* not supported in present state */
        return;
    }
    if (fscanf(f, "%u %15s", &watts, state) < 1) {
        fclose(f);
        answer(rdata, rdata_len, 0xd5);
        return;
    }
    fclose(f);

    rdata[0] = 0x00;                         /* completion code */
    rdata[1] = DCMI_GROUP;
    put16(rdata + 2, watts);                 /* current (instantaneous) power, W */
    put16(rdata + 4, 0);                     /* minimum: junk, as on many BMCs */
    put16(rdata + 6, 1023);                  /* maximum: junk, as on many BMCs */
    put16(rdata + 8, watts);                 /* average */
    put32(rdata + 10, (unsigned long) time(NULL));
    put32(rdata + 14, 1000);                 /* statistics reporting period, ms */
    rdata[18] = strcmp(state, "inactive") == 0 ? 0x00 : 0x40;  /* bit 6: measurement active */
    *rdata_len = 19;
}

int ipmi_sim_module_init(sys_data_t *sys, const char *initstr)
{
    (void) sys;
    if (!initstr || !*initstr) {
        fprintf(stderr, "dcmi_power: give the reading file as the loadlib option\n");
        return EINVAL;
    }
    reading_file = strdup(initstr);
    if (!reading_file)
        return ENOMEM;
    ipmi_emu_register_group_extension_handler(DCMI_GROUP, dcmi_handler, NULL);
    return 0;
}
