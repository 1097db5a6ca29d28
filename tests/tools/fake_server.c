/* tests/tools/fake_server.c - a misbehaving llama-server for the server
 * backend's tests (tests/cli/test-server.sh).
 *
 *   fake_server MODE UPSTREAM_PORT
 *   fake_server port              print a free loopback port and exit
 *
 * Listens on 127.0.0.1 at a free port and prints that port on stdout. Every
 * request but POST /completion is passed to the real llama-server at
 * 127.0.0.1:UPSTREAM_PORT (so the fake holds its adapters and vocabulary and
 * passes the backend's connect checks); POST /completion is answered by MODE:
 *   garbage   HTTP 200 with a body that is not JSON
 *   stall     read the request, never answer
 * One process per connection, each ending when the listener does
 * (PR_SET_PDEATHSIG) and after 120 s at most, so a test that kills the
 * listener by pid leaves nothing behind. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One request (headers and a Content-Length body) into buf [cap]; its
 * length, or -1. */
static ssize_t read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len + 1 >= cap)
            return -1;
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end + 4 - buf), body = 0;
    for (char *h = buf; h < end; h++)
        if (!strncasecmp(h, "\r\nContent-Length:", 17))
            body = strtoul(h + 17, NULL, 10);
    while (len < head + body) {
        if (len + 1 >= cap)
            return -1;
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return fd;
}

/* The request to upstream with "Connection: close" added; its answer back. */
static void forward(int client, char *req, size_t len, int port)
{
    int up = connect_port(port);
    if (up < 0)
        return;
    char *eol = strstr(req, "\r\n");
    if (!eol || write_all(up, req, (size_t)(eol + 2 - req)) ||
        write_all(up, "Connection: close\r\n", 19) ||
        write_all(up, eol + 2, len - (size_t)(eol + 2 - req)))
        goto out;
    char buf[65536];
    for (ssize_t r; (r = read(up, buf, sizeof buf)) > 0;)
        if (write_all(client, buf, (size_t)r))
            break;
out:
    close(up);
}

static void serve(int client, const char *mode, int port)
{
    static char req[1 << 20];
    ssize_t len = read_request(client, req, sizeof req);
    if (len < 0)
        return;
    if (strncmp(req, "POST /completion ", 17)) {
        forward(client, req, (size_t)len, port);
        return;
    }
    if (!strcmp(mode, "stall")) {
        pause();
        return;
    }
    const char *ans = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
                      "Connection: close\r\n\r\n{\"garbage\": ";
    write_all(client, ans, strlen(ans));
}

int main(int argc, char **argv)
{
    int free_port = argc == 2 && !strcmp(argv[1], "port");
    if (!free_port && (argc != 3 || (strcmp(argv[1], "garbage") && strcmp(argv[1], "stall")))) {
        fprintf(stderr, "usage: fake_server garbage|stall UPSTREAM_PORT, or fake_server port\n");
        return 2;
    }
    int port = free_port ? 0 : atoi(argv[2]);
    signal(SIGCHLD, SIG_IGN); /* no zombies */
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64) ||
        getsockname(ls, (struct sockaddr *)&a, &al)) {
        perror("fake_server");
        return 1;
    }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    if (free_port) /* closed at once: free for the caller, who binds it next */
        return 0;
    alarm(600); /* bounded even if nobody stops it */
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            alarm(120);
            serve(c, argv[1], port);
            close(c);
            _exit(0);
        }
        close(c);
    }
}
