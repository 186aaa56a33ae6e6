use std::time::Duration;

use super::*;

const NOW: u64 = 1_800_000_000;

fn id(acr: Option<&str>, auth_time: Option<u64>) -> Identity {
    Identity {
        subject: "u1".into(),
        acr: acr.map(str::to_owned),
        auth_time,
        ..Identity::default()
    }
}

fn asks(acr: &[&str], max_age: Option<u64>) -> StepUp {
    StepUp {
        acr_values: acr.iter().map(|a| (*a).to_owned()).collect(),
        max_age: max_age.map(Duration::from_secs),
    }
}

#[test]
fn a_session_passes_a_step_up_only_with_an_asked_acr_and_a_recent_enough_sign_in() {
    let gold = "urn:example:loa:gold";
    let silver = "urn:example:loa:silver";
    // (session acr, session auth_time, route acr_values, route max_age, shortfall)
    let table: &[(
        Option<&str>,
        Option<u64>,
        &[&str],
        Option<u64>,
        Option<Shortfall>,
    )] = &[
        // acr: any one of the asked values, compared exactly
        (Some(gold), None, &[gold], None, None),
        (Some(silver), None, &[gold, silver], None, None),
        (Some(silver), None, &[gold], None, Some(Shortfall::Acr)),
        (None, Some(NOW), &[gold], None, Some(Shortfall::Acr)),
        (
            Some("URN:EXAMPLE:LOA:GOLD"),
            None,
            &[gold],
            None,
            Some(Shortfall::Acr),
        ),
        (Some("gold"), None, &[gold], None, Some(Shortfall::Acr)),
        (
            Some("urn:example:loa:gold "),
            None,
            &[gold],
            None,
            Some(Shortfall::Acr),
        ),
        // max_age: now - auth_time <= max_age, to the second
        (None, Some(NOW - 600), &[], Some(600), None),
        (
            None,
            Some(NOW - 601),
            &[],
            Some(600),
            Some(Shortfall::TooOld),
        ),
        (None, Some(NOW), &[], Some(600), None),
        (None, None, &[], Some(600), Some(Shortfall::NoAuthTime)),
        (
            Some(gold),
            None,
            &[],
            Some(600),
            Some(Shortfall::NoAuthTime),
        ),
        (None, Some(0), &[], Some(600), Some(Shortfall::TooOld)),
        // a provider clock a little ahead passes; an auth_time far in the
        // future is not believed
        (None, Some(NOW + 60), &[], Some(600), None),
        (
            None,
            Some(NOW + 61),
            &[],
            Some(600),
            Some(Shortfall::TooOld),
        ),
        (
            None,
            Some(u64::MAX),
            &[],
            Some(600),
            Some(Shortfall::TooOld),
        ),
        // both: each must hold
        (Some(gold), Some(NOW - 10), &[gold], Some(600), None),
        (
            Some(gold),
            Some(NOW - 700),
            &[gold],
            Some(600),
            Some(Shortfall::TooOld),
        ),
        (
            Some(silver),
            Some(NOW - 10),
            &[gold],
            Some(600),
            Some(Shortfall::Acr),
        ),
        // asking nothing admits anything
        (None, None, &[], None, None),
    ];
    for (acr, auth_time, acr_values, max_age, want) in table {
        let session = id(*acr, *auth_time);
        let route = asks(acr_values, *max_age);
        let got = shortfall(&session, &route, NOW);
        assert_eq!(
            got, *want,
            "{acr:?} {auth_time:?} {acr_values:?} {max_age:?}"
        );
        assert_eq!(
            step_up_needed(&session, Some(&route), NOW),
            want.is_some(),
            "{acr:?} {auth_time:?} {acr_values:?} {max_age:?}"
        );
    }
}

#[test]
fn without_a_step_up_requirement_any_session_passes() {
    assert!(!step_up_needed(&id(None, None), None, NOW));
    assert!(!step_up_needed(&id(Some("x"), Some(0)), None, 0));
}

#[test]
fn a_requirement_survives_its_wire_form_in_the_login_state() {
    let route = asks(&["a", "b"], Some(300));
    assert_eq!(route.acr_param().as_deref(), Some("a b"));
    assert_eq!(route.max_age_secs(), Some(300));
    assert_eq!(
        StepUp::from_params(route.acr_param().as_deref(), route.max_age_secs()),
        Some(route)
    );
    let only_age = asks(&[], Some(60));
    assert_eq!(only_age.acr_param(), None);
    assert_eq!(StepUp::from_params(None, Some(60)), Some(only_age));
    // nothing asked: no requirement; stray spaces are not values
    assert_eq!(StepUp::from_params(None, None), None);
    assert_eq!(StepUp::from_params(Some("  "), None), None);
    assert_eq!(
        StepUp::from_params(Some(" a  b "), None),
        Some(asks(&["a", "b"], None))
    );
}
