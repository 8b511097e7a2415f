/* wy-chat's word filter (services/chat/filter.c): look-alike spellings are caught (case,
 * full-width, accents, Cyrillic/Greek confusables, digit swaps, separators, Hangul written as
 * syllables or jamo), masking hides exactly the matched characters, clean text is untouched,
 * and bad word lists are refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../../services/chat/filter.c"

static chat_filter_t *make(const char *words)
{
    chat_filter_t *f = NULL;
    const char *err = NULL;
    assert_int_equal(chat_filter_new(words, &f, &err), WY_OK);
    return f;
}

static void test_lookalikes_are_caught(void **state)
{
    (void)state;
    chat_filter_t *f = make("badword, 시발\n");
    assert_int_equal(chat_filter_count(f), 2);
    static const char *const caught[] = {
        "badword",
        "BadWord",
        "b a d w o r d",
        "b.a.d-w_o/r d",
        "ｂａｄｗｏｒｄ",
        "ＢＡＤＷＯＲＤ",
        "b\xd0\xb0"
        "dw\xd0\xbe"
        "rd", /* Cyrillic a, o */
        "b\xce\xb1"
        "dw\xce\xbf"
        "rd" /* Greek alpha, omicron */,
        "b4dw0rd",
        "b@dword",
        "bádwörd",
        "bad\xe2\x80\x8bword", /* zero-width space */
        "시발",
        "ㅅㅣ발",
        "ㅅㅣㅂㅏㄹ",
        "시 발",
        "\xe1\x84\x89\xe1\x85\xb5\xe1\x84\x87\xe1\x85\xa1\xe1\x86\xaf", /* conjoining jamo */
    };
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        char *masked = NULL;
        assert_true(chat_filter_apply(f, caught[i], &masked) >= 1);
        assert_non_null(masked);
        assert_null(strstr(masked, caught[i]));
        wy_free(masked);
    }
    chat_filter_free(f);
}

static void test_mask_hides_only_the_match(void **state)
{
    (void)state;
    chat_filter_t *f = make("bad");
    char *masked = NULL;
    assert_int_equal(chat_filter_apply(f, "so b-a-d, ok", &masked), 1);
    assert_string_equal(masked, "so *****, ok");
    wy_free(masked);
    assert_int_equal(chat_filter_apply(f, "ｂａｄ day 사랑", &masked), 1);
    assert_string_equal(masked, "*** day 사랑");
    wy_free(masked);
    assert_int_equal(chat_filter_apply(f, "bad and BAD", &masked), 2);
    assert_string_equal(masked, "*** and ***");
    wy_free(masked);
    assert_int_equal(chat_filter_apply(f, "good day", &masked), 0);
    assert_null(masked);
    assert_int_equal(chat_filter_apply(f, "bad", NULL), 1);
    chat_filter_free(f);
}

static void test_empty_list_matches_nothing(void **state)
{
    (void)state;
    chat_filter_t *f = make(" , ,\n");
    char *masked = NULL;
    assert_int_equal(chat_filter_count(f), 0);
    assert_int_equal(chat_filter_apply(f, "anything", &masked), 0);
    assert_null(masked);
    chat_filter_free(f);
}

static void test_bad_lists_are_refused(void **state)
{
    (void)state;
    chat_filter_t *f = NULL;
    const char *err = NULL;
    assert_int_equal(chat_filter_new("ok, !!!", &f, &err), WY_EINVAL);
    assert_string_equal(err, "a filter word has no letter or digit");
    char long_word[80];
    memset(long_word, 'a', sizeof long_word - 1);
    long_word[sizeof long_word - 1] = '\0';
    assert_int_equal(chat_filter_new(long_word, &f, &err), WY_EINVAL);
    assert_int_equal(chat_filter_new("ok,\xff\xfe", &f, &err), WY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookalikes_are_caught),
        cmocka_unit_test(test_mask_hides_only_the_match),
        cmocka_unit_test(test_empty_list_matches_nothing),
        cmocka_unit_test(test_bad_lists_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
