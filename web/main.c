/* SPDX-License-Identifier: MIT */
/*
 * rtdaq-web's main(): everything is in rtd_web_main() (web/web_main.c).
 */
#include "rtd_web.h"

int main(int argc, char **argv)
{
    return rtd_web_main(argc, argv);
}
