/* Unit tests for wy_text: UTF-8 validation, NFKC / case folding of look-alikes,
 * character classes, scripts and identifier rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wy_text.h"

static void assert_fold(const char *in, const char *want)
{
    char *out = NULL;
    assert_int_equal(wy_text_fold(in, strlen(in), &out), WY_OK);
    assert_string_equal(out, want);
    wy_free(out);
}

static void test_fold_makes_look_alikes_equal(void **state)
{
    (void)state;
    assert_fold("\xef\xbc\xb0layer", "player");    /* fullwidth P */
    assert_fold("\xef\xac\x81le", "file");          /* fi ligature */
    assert_fold("PLAYER", "player");
    assert_fold("Stra\xc3\x9f" "e", "strasse");     /* sharp s folds to ss */
    assert_fold("Jose\xcc\x81", "jos\xc3\xa9");     /* combining acute composes */
    assert_fold("\xe2\x85\xa0", "i");               /* Roman numeral one */
    assert_fold("\xed\x95\x9c\xea\xb8\x80", "\xed\x95\x9c\xea\xb8\x80"); /* Hangul unchanged */
    assert_fold("", "");
}

static void test_nfkc_and_nfc(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(wy_text_nfkc("\xef\xac\x81", 3, &out), WY_OK);
    assert_string_equal(out, "fi");
    wy_free(out);
    assert_int_equal(wy_text_nfc("\xef\xac\x81" "e\xcc\x81", 6, &out), WY_OK);
    assert_string_equal(out, "\xef\xac\x81\xc3\xa9"); /* ligature kept, accent composed */
    wy_free(out);
    /* Conjoining Hangul jamo compose into the syllable. */
    assert_int_equal(wy_text_nfc("\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", 9, &out), WY_OK);
    assert_string_equal(out, "\xed\x95\x9c");
    wy_free(out);
}

static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    const char *bad[] = {
        "\xc3",             /* truncated */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* > U+10FFFF */
        "\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)1;
        assert_false(wy_text_valid_utf8(bad[i], strlen(bad[i])));
        assert_int_equal(wy_text_fold(bad[i], strlen(bad[i]), &out), WY_EINVAL);
        assert_null(out);
        assert_int_equal(wy_text_nfkc(bad[i], strlen(bad[i]), &out), WY_EINVAL);
    }
    assert_false(wy_text_valid_utf8("a\0b", 3)); /* embedded NUL */
    assert_true(wy_text_valid_utf8("caf\xc3\xa9", 5));
}

static void test_classes_and_scripts(void **state)
{
    (void)state;
    assert_int_equal(wy_text_class('a'), WY_TEXT_LETTER);
    assert_int_equal(wy_text_class(0xD55C), WY_TEXT_LETTER); /* 한 */
    assert_int_equal(wy_text_class('7'), WY_TEXT_DIGIT);
    assert_int_equal(wy_text_class(0x0301), WY_TEXT_MARK);
    assert_int_equal(wy_text_class('_'), WY_TEXT_PUNCT);
    assert_int_equal(wy_text_class(0x1F600), WY_TEXT_SYMBOL);
    assert_int_equal(wy_text_class(' '), WY_TEXT_SPACE);
    assert_int_equal(wy_text_class('\t'), WY_TEXT_CONTROL);
    assert_int_equal(wy_text_class(0x200B), WY_TEXT_CONTROL); /* zero-width space (Cf) */
    assert_string_equal(wy_text_script('a'), "Latin");
    assert_string_equal(wy_text_script(0x0430), "Cyrillic");
    assert_string_equal(wy_text_script(0xD55C), "Hangul");
    assert_string_equal(wy_text_script('1'), "Common");
    assert_int_equal(wy_text_length("h\xc3\xa9\xed\x95\x9c"), 3);
    size_t pos = 0;
    uint32_t cp = 0;
    assert_true(wy_text_next("\xc3\xa9x", &pos, &cp));
    assert_int_equal(cp, 0xE9);
    assert_true(wy_text_next("\xc3\xa9x", &pos, &cp));
    assert_int_equal(cp, 'x');
    assert_false(wy_text_next("\xc3\xa9x", &pos, &cp));
}

static const wy_text_rules_t names = {
    .min_chars = 3,
    .max_chars = 8,
    .max_bytes = 32,
    .classes = WY_TEXT_LETTER | WY_TEXT_MARK | WY_TEXT_DIGIT,
    .extra = "_-",
    .first_alnum = true,
    .single_script = true,
};

static int check(const char *s)
{
    const char *why = NULL;
    int rc = wy_text_check(s, &names, &why);
    if (rc != WY_OK)
        assert_non_null(why);
    return rc;
}

static void test_rules(void **state)
{
    (void)state;
    assert_int_equal(check("abc"), WY_OK);
    assert_int_equal(check("a_b-9"), WY_OK);
    assert_int_equal(check("\xed\x95\x9c\xea\xb8\x80\xec\x9d\xb4"), WY_OK); /* 한글이 */
    assert_int_equal(check("\xea\xb9\x80" "abc"), WY_OK);                    /* 김abc */
    assert_int_equal(check("\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd"), WY_OK);     /* иван */
    assert_int_equal(check("ab"), WY_EINVAL);           /* too short */
    assert_int_equal(check("abcdefghi"), WY_EINVAL);    /* too long */
    assert_int_equal(check("_abc"), WY_EINVAL);         /* first not alnum */
    assert_int_equal(check("a b c"), WY_EINVAL);        /* space not allowed */
    assert_int_equal(check("ab.c"), WY_EINVAL);         /* '.' not in extra */
    assert_int_equal(check("p\xd0\xb0ypal"), WY_EINVAL); /* Latin + Cyrillic a */
    assert_int_equal(check("abc\xe2\x80\x8b"), WY_EINVAL); /* zero-width space */
    assert_int_equal(check("ab\xc3"), WY_EINVAL);       /* invalid UTF-8 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_makes_look_alikes_equal),
        cmocka_unit_test(test_nfkc_and_nfc),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_classes_and_scripts),
        cmocka_unit_test(test_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
